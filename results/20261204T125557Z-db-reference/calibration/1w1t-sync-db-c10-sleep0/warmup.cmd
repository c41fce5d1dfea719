wrk -t4 -c10 -d1s --timeout 10s http://127.0.0.1:8000/sync-db
