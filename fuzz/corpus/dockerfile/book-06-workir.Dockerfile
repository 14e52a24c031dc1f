FROM node:9.4
RUN mkdir -p /app
WORKIR /app
