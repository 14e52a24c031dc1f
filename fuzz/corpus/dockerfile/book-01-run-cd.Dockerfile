FROM busybox
RUN cd /app/bin
RUN touch sample.txt
