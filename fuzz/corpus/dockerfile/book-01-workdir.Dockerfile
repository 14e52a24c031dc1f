FROM busybox
WORKDIR /app/bin
RUN touch sample.txt
