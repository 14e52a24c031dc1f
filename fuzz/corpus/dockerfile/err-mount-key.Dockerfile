FROM busybox
RUN --mount=type=tmpfs,target=/x,sharing=locked true
