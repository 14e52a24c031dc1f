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
RUN echo escaped-backslash-ends-the-line \\
RUN echo \
\
    backslash-alone-on-a-line-continues
RUN echo "end of file" \
