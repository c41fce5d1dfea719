wrk -t4 -c20 -d40s --timeout 10s http://127.0.0.1:8000/async-blocking
