FROM busybox
COPY --from /a /b
