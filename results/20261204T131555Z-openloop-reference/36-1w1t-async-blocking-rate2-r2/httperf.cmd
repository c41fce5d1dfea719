httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 2 --num-conns 40 --timeout 3
