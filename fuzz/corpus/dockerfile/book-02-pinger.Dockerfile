FROM alpine:latest
ENTRYPOINT ["ping"]
CMD ["127.0.0.1", "-c", "3"]
