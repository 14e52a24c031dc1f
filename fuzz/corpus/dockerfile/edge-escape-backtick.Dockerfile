# escape=`

FROM mcr.microsoft.com/windows/servercore
COPY testfile.txt c:\
RUN dir c:\
RUN echo one `
    two
ENV PATH="c:\tools;${PATH}" `
    HOME=c:\users\app
