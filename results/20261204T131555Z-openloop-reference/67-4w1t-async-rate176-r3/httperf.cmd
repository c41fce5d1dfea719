httperf --hog --server 127.0.0.1 --port 8000 --uri /async --rate 176 --num-conns 3520 --timeout 3
