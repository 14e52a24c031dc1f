FROM alpine:latest
CMD wget -O - http://127.0.0.1:PORT/
