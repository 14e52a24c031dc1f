# syntax=docker/dockerfile:1.7
#  CHECK = skip=all
# escape=\

# escape=` (not a directive any more: a comment after an empty line)
FROM busybox
RUN echo a \
    b
