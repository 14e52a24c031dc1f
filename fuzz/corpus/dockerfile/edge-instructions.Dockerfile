# syntax=docker/dockerfile:1
ARG BASE=busybox VERSION
FROM --platform=$BUILDPLATFORM ${BASE}:${VERSION:-latest} AS Builder
ARG VERSION
ARG A=1 B="two words" C
ENV A=1 B="x y" C=$A\ z
ENV LEGACY value with  spaces
LABEL org.opencontainers.image.title="hoist test" version=1 "quoted key"=v
LABEL legacy label value
EXPOSE 80 443/tcp 53/udp $PORT
USER app:staff
WORKDIR /srv/$A
STOPSIGNAL SIGTERM
MAINTAINER Jane Doe <jane@example.com>
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ONBUILD COPY --chown=1:1 . /app
ONBUILD RUN --mount=type=cache,target=/c make
onbuild   run echo lowercase
HEALTHCHECK --interval=30s --timeout=1m30s --start-period=1.5s --start-interval=500ms --retries=3 CMD curl -f http://localhost/ || exit 1
HEALTHCHECK CMD ["/bin/check", "--quick"]
HEALTHCHECK --retries=0 cmd true
HEALTHCHECK NONE
ENTRYPOINT exec server --flag
CMD ["--port", "80"]
CMD ['single', 'quotes', 'are', 'shell', 'form']
VOLUME [ "/data" ]
COPY --from=builder --chown=app:app --chmod=0644 --link --exclude=*.md --exclude=**/*.tmp --parents ./a/*.txt ./b /dest/
COPY ["file with spaces.txt", "/dest dir/"]
ADD --checksum=sha256:24454f830cdb571e2c4ad15481119c43b3cafd48dd869a9b2945d1036d1dc68d --chmod=755 --link=false https://example.com/tool /usr/bin/tool
ADD --keep-git-dir=true https://github.com/moby/buildkit.git#v0.10.1 /buildkit
ADD --unpack=false --exclude=x archive.tar.gz /opt/
FROM builder AS final
COPY --from=0 /out /out
ONBUILD RUN <<EOT
echo triggered
EOT
HEALTHCHECK --interval=5s NONE
