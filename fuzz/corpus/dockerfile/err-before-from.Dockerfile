ARG OK=1
RUN echo no stage
FROM busybox
