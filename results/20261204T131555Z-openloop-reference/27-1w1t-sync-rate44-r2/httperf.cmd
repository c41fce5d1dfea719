httperf --hog --server 127.0.0.1 --port 8000 --uri /sync --rate 44 --num-conns 880 --timeout 3
