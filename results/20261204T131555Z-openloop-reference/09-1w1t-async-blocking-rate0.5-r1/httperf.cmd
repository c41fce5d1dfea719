httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 0.5 --num-conns 10 --timeout 3
