package events

// Subjects. Each has the form doraflow.<producer>.<entity>.<past-tense-event> and carries exactly one Go
// type. docs/events.md lists producers, consumers and durable consumer names for each.
const (
	// SubjectDeploymentObserved carries DeploymentObserved, published by argocd-watcher.
	SubjectDeploymentObserved = "doraflow.argocd.deployment.observed"
	// SubjectChangeFailureDetected carries ChangeFailureSignal, published by argocd-watcher.
	SubjectChangeFailureDetected = "doraflow.argocd.changefailure.detected"
	// SubjectIncidentObserved carries IncidentObserved, published by webrca-poller.
	SubjectIncidentObserved = "doraflow.webrca.incident.observed"
	// SubjectDeploymentEnriched carries DeploymentEnriched, published by enricher.
	SubjectDeploymentEnriched = "doraflow.enricher.deployment.enriched"
	// SubjectIncidentEnriched carries IncidentEnriched, published by enricher.
	SubjectIncidentEnriched = "doraflow.enricher.incident.enriched"
	// SubjectChangeFailureInferred carries ChangeFailureInferred, published by enricher: change
	// failures found in commit history (a GitOps revert), which no source observes directly.
	SubjectChangeFailureInferred = "doraflow.enricher.changefailure.inferred"

	// SubjectDeadLetterPrefix is the prefix of every service's dead-letter subject:
	// doraflow.dlq.<service>. The message keeps its original body; the headers in HeaderDead* say why.
	SubjectDeadLetterPrefix = "doraflow.dlq."
)

// DeadLetterSubject returns the dead-letter subject of a service, such as doraflow.dlq.enricher.
func DeadLetterSubject(service string) string { return SubjectDeadLetterPrefix + service }

// Streams. They follow the pipeline's stages, so each can get its own retention and replicas.
const (
	// StreamRaw holds what sources observed: doraflow.argocd.> and doraflow.webrca.>.
	StreamRaw = "DORAFLOW_RAW"
	// StreamEnriched holds what the enricher produced: doraflow.enricher.>.
	StreamEnriched = "DORAFLOW_ENRICHED"
	// StreamDeadLetter holds dead-lettered messages of every service: doraflow.dlq.>.
	StreamDeadLetter = "DORAFLOW_DLQ"
)

// DeadLetterBodyBucket is the JetStream object store that keeps the bodies of dead letters too large
// for a message of their own (HeaderDeadBody).
const DeadLetterBodyBucket = "doraflow-dlq-bodies"

// StreamSubjects maps each stream to the subject filters it captures.
var StreamSubjects = map[string][]string{
	StreamRaw:        {"doraflow.argocd.>", "doraflow.webrca.>"},
	StreamEnriched:   {"doraflow.enricher.>"},
	StreamDeadLetter: {SubjectDeadLetterPrefix + ">"},
}

// CloudEvents types, one per subject. The suffix is the contract's major version.
const (
	TypeDeploymentObserved    = "io.doraflow.deployment.observed.v1"
	TypeChangeFailureSignal   = "io.doraflow.changefailure.detected.v1"
	TypeIncidentObserved      = "io.doraflow.incident.observed.v1"
	TypeDeploymentEnriched    = "io.doraflow.deployment.enriched.v1"
	TypeIncidentEnriched      = "io.doraflow.incident.enriched.v1"
	TypeChangeFailureInferred = "io.doraflow.changefailure.inferred.v1"
	CloudEventsSpecVersion    = "1.0"
	ContentTypeJSON           = "application/json"
	cloudEventsSourcePrefix   = "/doraflow/"
	maxCloudEventsSubjectLen  = 256
)

// NATS headers. CloudEvents attributes use the binary content mode of the CloudEvents NATS binding:
// one "ce-" header per attribute and the JSON body as the payload.
const (
	HeaderSpecVersion   = "ce-specversion"
	HeaderID            = "ce-id"
	HeaderType          = "ce-type"
	HeaderSource        = "ce-source"
	HeaderTime          = "ce-time"
	HeaderSubject       = "ce-subject"
	HeaderCorrelationID = "ce-correlationid" // CloudEvents extension attribute: the ID of the root event
	HeaderContentType   = "Content-Type"
	// HeaderMsgID is JetStream's de-duplication header. doraflow sets it to the event ID.
	HeaderMsgID = "Nats-Msg-Id"

	// HeaderDeadReason says why a message was dead-lettered.
	HeaderDeadReason = "doraflow-dead-reason"
	// HeaderDeadSubject is the subject the message was consumed from.
	HeaderDeadSubject = "doraflow-dead-subject"
	// HeaderDeadHandler is the durable consumer (handler) that gave up on it.
	HeaderDeadHandler = "doraflow-dead-handler"
	// HeaderDeadStreamSeq is the sequence of the original message in its stream.
	HeaderDeadStreamSeq = "doraflow-dead-stream-seq"
	// HeaderDeadDeliveries is how many times the message had been delivered.
	HeaderDeadDeliveries = "doraflow-dead-deliveries"
	// HeaderDeadAt is when it was dead-lettered (RFC 3339).
	HeaderDeadAt = "doraflow-dead-at"
	// HeaderDeadBody, set when the original body was too large to travel in the dead letter, names
	// where it is kept whole: "<DeadLetterBodyBucket>/<object name>"; the dead letter's body is empty.
	HeaderDeadBody = "doraflow-dead-body"
)
