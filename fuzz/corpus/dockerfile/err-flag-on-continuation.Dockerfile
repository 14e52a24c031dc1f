FROM busybox
RUN echo one && \
    echo two
COPY --chown=1:1 \
     --link=maybe a b
