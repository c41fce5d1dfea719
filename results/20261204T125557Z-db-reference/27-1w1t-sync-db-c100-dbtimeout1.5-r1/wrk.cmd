wrk -t4 -c100 -d10s --timeout 10s http://127.0.0.1:8000/sync-db
