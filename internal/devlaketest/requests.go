package devlaketest

import (
	"fmt"
	"strings"
	"time"
)

// Environments DevLake accepts (case-sensitive).
var environments = []string{"PRODUCTION", "STAGING", "TESTING", "DEVELOPMENT"}

// Issue statuses DevLake accepts.
var issueStatuses = []string{"TODO", "IN_PROGRESS", "DONE"}

type deploymentReq struct {
	id, result, environment, originalEnvironment, displayTitle, name string
	createdDate, startedDate, finishedDate                           time.Time
	commits                                                          []commitReq
}

type commitReq struct {
	repoURL, repoID, commitSha, commitMsg, refName, name, displayTitle, result, status string
	createdDate, startedDate, finishedDate                                             time.Time
}

type issueReq struct {
	issueKey, title, description, typ, status, originalStatus, url, severity, priority, component string
	creatorID, creatorName, assigneeID, assigneeName, parentIssueKey, epicKey                     string
	storyPoint                                                                                    *float64
	originalEstimateMinutes, timeSpentMinutes, timeRemainingMinutes                               int64
	leadTimeMinutes                                                                               uint64
	createdDate, updatedDate, resolutionDate                                                      time.Time
}

// validation collects go-playground-validator style messages.
type validation []string

func (v *validation) required(owner, field string, ok bool) {
	if !ok {
		*v = append(*v, fmt.Sprintf("Key: '%s.%s' Error:Field validation for '%s' failed on the 'required' tag", owner, field, field))
	}
}

func (v *validation) oneOf(owner, field, value string, allowed []string) {
	for _, a := range allowed {
		if value == a {
			return
		}
	}
	*v = append(*v, fmt.Sprintf("Key: '%s.%s' Error:Field validation for '%s' failed on the 'oneof' tag", owner, field, field))
}

// decodeDeployment reads and validates a deployment request, applying DevLake's defaults. The
// returned message, when not empty, is the 400 answer.
func decodeDeployment(body map[string]any) (deploymentReq, string) {
	const owner = "WebhookDeploymentReq"
	o := newObject(owner, body)
	d := deploymentReq{
		id: o.str("id"), result: o.str("result"), environment: o.str("environment"),
		originalEnvironment: o.str("originalEnvironment"), displayTitle: o.str("displayTitle"), name: o.str("name"),
		createdDate: o.date("createdDate"), startedDate: o.date("startedDate"), finishedDate: o.date("finishedDate"),
	}
	for _, c := range o.objects("deploymentCommits", "WebhookDeploymentCommitReq") {
		d.commits = append(d.commits, commitReq{
			repoURL: c.str("repoUrl"), repoID: c.str("repoId"), commitSha: c.str("commitSha"), commitMsg: c.str("commitMsg"),
			refName: c.str("refName"), name: c.str("name"), displayTitle: c.str("displayTitle"), result: c.str("result"),
			status: c.str("status"), createdDate: c.date("createdDate"), startedDate: c.date("startedDate"),
			finishedDate: c.date("finishedDate"),
		})
		o.errs = append(o.errs, c.errs...)
	}
	if len(o.errs) > 0 {
		return d, "input json error: " + strings.Join(o.errs, "; ")
	}
	var v validation
	v.required(owner, "Id", d.id != "")
	v.required(owner, "StartedDate", !d.startedDate.IsZero())
	v.required(owner, "FinishedDate", !d.finishedDate.IsZero())
	if d.environment != "" {
		v.oneOf(owner, "Environment", d.environment, environments)
	}
	for i, c := range d.commits {
		co := fmt.Sprintf("%s.DeploymentCommits[%d]", owner, i)
		v.required(co, "RepoUrl", c.repoURL != "")
		v.required(co, "CommitSha", c.commitSha != "")
		v.required(co, "StartedDate", !c.startedDate.IsZero())
		v.required(co, "FinishedDate", !c.finishedDate.IsZero())
	}
	if len(v) > 0 {
		return d, "input json error: " + strings.Join(v, "\n")
	}
	if len(d.commits) == 0 {
		return d, "deployment_commits is empty"
	}

	// Defaults, as the webhook applies them before writing.
	if d.createdDate.IsZero() {
		d.createdDate = d.startedDate
	}
	if d.result == "" {
		d.result = "SUCCESS"
	}
	if d.environment == "" {
		d.environment = "PRODUCTION"
	}
	if d.originalEnvironment == "" {
		d.originalEnvironment = d.environment
	}
	shas := make([]string, len(d.commits))
	for i := range d.commits {
		c := &d.commits[i]
		shas[i] = c.commitSha
		if c.result == "" {
			c.result = "SUCCESS"
		}
		if c.status == "" {
			c.status = "DONE"
		}
		if c.createdDate.IsZero() {
			c.createdDate = d.createdDate
		}
		if c.name == "" {
			c.name = "deployment for " + c.commitSha
		}
	}
	if d.name == "" {
		d.name = fmt.Sprintf("deploy %s to %s", strings.Join(shas, ","), d.environment)
	}
	return d, ""
}

// decodeIssue reads and validates an issue request.
func decodeIssue(body map[string]any) (issueReq, string) {
	const owner = "WebhookIssueRequest"
	o := newObject(owner, body)
	r := issueReq{
		issueKey: o.str("issueKey"), title: o.str("title"), description: o.str("description"), typ: o.str("type"),
		status: o.str("status"), originalStatus: o.str("originalStatus"), url: o.str("url"), severity: o.str("severity"),
		priority: o.str("priority"), component: o.str("component"), creatorID: o.str("creatorId"),
		creatorName: o.str("creatorName"), assigneeID: o.str("assigneeId"), assigneeName: o.str("assigneeName"),
		parentIssueKey: o.str("parentIssueKey"), epicKey: o.str("epicKey"), storyPoint: o.float("storyPoint"),
		originalEstimateMinutes: o.int("originalEstimateMinutes"), timeSpentMinutes: o.int("timeSpentMinutes"),
		timeRemainingMinutes: o.int("timeRemainingMinutes"), leadTimeMinutes: o.uint("leadTimeMinutes"),
		createdDate: o.date("createdDate"), updatedDate: o.date("updatedDate"), resolutionDate: o.date("resolutionDate"),
	}
	if len(o.errs) > 0 {
		return r, strings.Join(o.errs, "; ")
	}
	var v validation
	v.required(owner, "IssueKey", r.issueKey != "")
	v.required(owner, "Title", r.title != "")
	v.oneOf(owner, "Status", r.status, issueStatuses)
	v.required(owner, "OriginalStatus", r.originalStatus != "")
	v.required(owner, "CreatedDate", !r.createdDate.IsZero())
	if len(v) > 0 {
		return r, strings.Join(v, "\n")
	}
	return r, ""
}
