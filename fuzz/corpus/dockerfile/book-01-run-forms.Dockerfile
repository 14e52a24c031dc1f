FROM debian:12
RUN mkdir -p /app && cd /app
RUN apt-get update \
    && apt-get install -y --no-install-recommends \
       ca-certificates \
    && rm -rf /var/lib/apt/lists/*
