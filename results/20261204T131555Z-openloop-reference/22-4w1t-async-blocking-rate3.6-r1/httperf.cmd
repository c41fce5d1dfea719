httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 3.6 --num-conns 72 --timeout 3
