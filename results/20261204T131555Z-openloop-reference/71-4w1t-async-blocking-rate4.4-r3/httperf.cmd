httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 4.4 --num-conns 88 --timeout 3
