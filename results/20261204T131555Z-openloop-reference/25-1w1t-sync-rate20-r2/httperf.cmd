httperf --hog --server 127.0.0.1 --port 8000 --uri /sync --rate 20 --num-conns 400 --timeout 3
