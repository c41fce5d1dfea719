wrk -t4 -c400 -d10s --timeout 10s http://127.0.0.1:8000/async-db
