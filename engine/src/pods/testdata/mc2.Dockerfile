FROM debian-gcc:bookworm AS build
COPY ipc.c /src/
RUN gcc -static -O2 -o /src/ipc /src/ipc.c
FROM scratch
COPY --from=build /src/ipc /ipc
WORKDIR /
