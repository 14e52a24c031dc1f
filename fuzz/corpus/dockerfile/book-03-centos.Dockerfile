FROM centos:7
RUN yum install -y wget
