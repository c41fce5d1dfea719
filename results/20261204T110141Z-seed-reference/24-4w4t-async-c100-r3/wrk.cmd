wrk -t4 -c100 -d60s --timeout 30s http://127.0.0.1:8000/async
