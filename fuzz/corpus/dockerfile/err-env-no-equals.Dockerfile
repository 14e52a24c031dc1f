FROM busybox
ENV A=1 B
