httperf --hog --server 127.0.0.1 --port 8000 --uri /sync --rate 320 --num-conns 6400 --timeout 3
