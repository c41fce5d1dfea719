httperf --hog --server 127.0.0.1 --port 8000 --uri /sync --rate 144 --num-conns 2880 --timeout 3
