module github.com/doraflow/doraflow/services/metrics-exporter

go 1.26.0

replace (
	github.com/doraflow/doraflow/internal => ../../internal
	github.com/doraflow/doraflow/pkg/events => ../../pkg/events
)
