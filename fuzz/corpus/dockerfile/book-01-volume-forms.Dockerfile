FROM busybox
VOLUME /app/data
VOLUME /app/data /app/profiles /app/config
VOLUME ["/app/data", "/app/profiles", "/app/config"]
