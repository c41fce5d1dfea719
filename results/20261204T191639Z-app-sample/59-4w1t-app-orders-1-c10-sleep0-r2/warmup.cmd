wrk -t1 -c10 -d2s --timeout 10s http://127.0.0.1:8000/orders/1
