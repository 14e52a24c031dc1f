FROM busybox
COPY . /app
COPY ./web /app/web
COPY sample.txt /data/my-sample.txt
ADD sample.tar /app/bin/
ADD http://127.0.0.1:PORT/sample.txt /data/
COPY ./sample* /mydir/
ADD --chown=11:22 ./data/files* /app/data/
