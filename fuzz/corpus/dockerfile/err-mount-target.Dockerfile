FROM busybox
RUN --mount=type=cache true
