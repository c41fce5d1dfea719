httperf --hog --server 127.0.0.1 --port 8000 --uri /async-blocking --rate 8 --num-conns 160 --timeout 3
