FROM busybox
RUN echo crlf \
  done
