FROM busybox
RUN echo one \
# a comment inside the continuation is dropped
    two \

    three \
  # indented comments too
    four
  RUN    echo   indented  
RUN echo trailing-space-after-backslash \   
    ok
RUN echo escaped-backslash-is-still-continuation \\
    next
RUN echo "end of file" \
