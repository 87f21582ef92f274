module github.com/doraflow/doraflow/pkg/events

go 1.26.0
