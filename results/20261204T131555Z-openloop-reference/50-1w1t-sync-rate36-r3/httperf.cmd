httperf --hog --server 127.0.0.1 --port 8000 --uri /sync --rate 36 --num-conns 720 --timeout 3
