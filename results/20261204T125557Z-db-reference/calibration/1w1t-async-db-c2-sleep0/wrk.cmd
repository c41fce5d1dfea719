wrk -t2 -c2 -d2s --timeout 10s http://127.0.0.1:8000/async-db
