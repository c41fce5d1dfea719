/work/main/.venv/bin/granian --interface asgi --working-dir /work/main/results/20261125T212528Z-servers-reference --host 127.0.0.1 --port 8000 --workers 4 --no-access-log app:app 
