httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 0.9 --num-conns 18 --timeout 3
