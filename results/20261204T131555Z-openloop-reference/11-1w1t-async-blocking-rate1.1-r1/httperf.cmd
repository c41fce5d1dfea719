httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 1.1 --num-conns 22 --timeout 3
