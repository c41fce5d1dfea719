/work/main/.venv/bin/gunicorn app:app --chdir /work/main/results/20261125T215916Z-openloop-reference --no-control-socket -b 127.0.0.1:8000 -w 1 --threads 1 -k uvicorn_worker.UvicornWorker 
