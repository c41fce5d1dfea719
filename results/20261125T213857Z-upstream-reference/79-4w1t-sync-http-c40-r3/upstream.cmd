/work/main/.venv/bin/uvicorn app:app --app-dir /work/main/results/20261125T213857Z-upstream-reference --host 127.0.0.1 --port 8001 --workers 1 --no-access-log 
