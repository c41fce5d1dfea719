httperf --hog --server 127.0.0.1 --port 8000 --uri /async --rate 80 --num-conns 1600 --timeout 3
