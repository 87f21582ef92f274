package dora

// The expected windowed values and levels of TestScenarioHandWorked, from the hand-worked table in
// its comment (7d window: (Mar 15 00:00, Mar 22 00:00]; 30d: (Feb 20 00:00, Mar 22 00:00]).
//
// 7d, checkout-api/production: D5, D6, D7 → 3 deployments, 3/7 per day, days Mar 15 and 20 → 2;
// commits first deployed: c6 43200, c7 86400 → median 64800; failed D5 → 1/3; rework D6 → 1/3;
// recovery D5 3600. cart: C3 → 1, 1/7; k2 86400; failed (INC2) 1/1; rework (revert) 1/1; no
// recovery (INC2 open). login: L2 → 1, 1/7, m2 21600, 0 failures. staging: S2 (Mar 14 23:00) is
// outside. Team payments = checkout + cart: 4, 4/7, days {15, 17, 20} = 3, LT {43200, 86400,
// 86400} → 86400, failed 2/4, rework 2/4, recovery {3600}. Organisation production adds login: 5,
// 5/7, days 4, LT {21600, 43200, 86400, 86400} → (43200+86400)/2 = 64800, failed 2/5, rework 2/5.
//
// 30d: everything. checkout: 7, 7/30, 5 days, LT {3600, 3600, 43200, 86400, 86400, 86400, 172800}
// → 86400, failed D2 D3 D5 → 3/7, rework D4 D6 → 2/7, recovery {2400, 3600, 21600} → 3600.
// cart: 3, 3/30 = 0.1, 3 days, LT {1800, 86400} → 44100, failed C2 C3 → 2/3, rework C3 → 1/3,
// recovery {604800}. login: 2, 2/30, LT {21600, 777600} → 399600. staging: 2, 2/30, LT {3600,
// 79200, 165600} → 79200. Team payments: 10, 10/30, days {2,3,5,9,10,15,17,20} = 8, 9 lead times
// {1800, 3600, 3600, 43200, 86400 ×4, 172800} → 86400, failed 5/10, rework 3/10, recovery {2400,
// 3600, 21600, 604800} → (3600+21600)/2 = 12600. Organisation: 12, 12/30 = 0.4, days 8 + {1, 21} =
// 10, 11 lead times → the 6th, 86400; failed 5/12; rework 3/12; recovery 12600.
//
// Levels (dora2023, production): DF elite ≥ 1/day, high ≥ 1/7, medium ≥ 1/30; LT elite < 1 d,
// high < 1 w, medium < 30 d; CFR elite ≤ 5%, high ≤ 10%, medium ≤ 15%; FDRT elite < 1 h, high < 1 d,
// medium < 1 w. So checkout 7d: 3/7 → high 3, 64800 → elite 4, 33% → low 1, 3600 → high 3 (not
// < 1 h). cart 7d: exactly 1/7 → high 3; 86400 → high 3 (not < 1 d). cart 30d: 0.1 → medium 2;
// 44100 → elite 4; 604800 → low 1 (not < 1 w). login 30d: 2/30 → medium 2; 399600 → high 3; 0% →
// elite 4.

const windowsWant = `
# HELP dora_window_deployments Successful non-redeploy deployments finished in the trailing window.
# TYPE dora_window_deployments gauge
dora_window_deployments{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 3
dora_window_deployments{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 7
dora_window_deployments{component="checkout-api",environment="staging",scope="component",team="payments",window="7d"} 0
dora_window_deployments{component="checkout-api",environment="staging",scope="component",team="payments",window="30d"} 2
dora_window_deployments{component="cart",environment="production",scope="component",team="payments",window="7d"} 1
dora_window_deployments{component="cart",environment="production",scope="component",team="payments",window="30d"} 3
dora_window_deployments{component="login",environment="production",scope="component",team="identity",window="7d"} 1
dora_window_deployments{component="login",environment="production",scope="component",team="identity",window="30d"} 2
dora_window_deployments{component="",environment="production",scope="team",team="payments",window="7d"} 4
dora_window_deployments{component="",environment="production",scope="team",team="payments",window="30d"} 10
dora_window_deployments{component="",environment="staging",scope="team",team="payments",window="7d"} 0
dora_window_deployments{component="",environment="staging",scope="team",team="payments",window="30d"} 2
dora_window_deployments{component="",environment="production",scope="team",team="identity",window="7d"} 1
dora_window_deployments{component="",environment="production",scope="team",team="identity",window="30d"} 2
dora_window_deployments{component="",environment="production",scope="organization",team="",window="7d"} 5
dora_window_deployments{component="",environment="production",scope="organization",team="",window="30d"} 12
dora_window_deployments{component="",environment="staging",scope="organization",team="",window="7d"} 0
dora_window_deployments{component="",environment="staging",scope="organization",team="",window="30d"} 2
# HELP dora_window_deployments_per_day Deployment frequency: dora_window_deployments divided by the window's days.
# TYPE dora_window_deployments_per_day gauge
dora_window_deployments_per_day{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 0.42857142857142855
dora_window_deployments_per_day{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 0.23333333333333334
dora_window_deployments_per_day{component="checkout-api",environment="staging",scope="component",team="payments",window="7d"} 0
dora_window_deployments_per_day{component="checkout-api",environment="staging",scope="component",team="payments",window="30d"} 0.06666666666666667
dora_window_deployments_per_day{component="cart",environment="production",scope="component",team="payments",window="7d"} 0.14285714285714285
dora_window_deployments_per_day{component="cart",environment="production",scope="component",team="payments",window="30d"} 0.1
dora_window_deployments_per_day{component="login",environment="production",scope="component",team="identity",window="7d"} 0.14285714285714285
dora_window_deployments_per_day{component="login",environment="production",scope="component",team="identity",window="30d"} 0.06666666666666667
dora_window_deployments_per_day{component="",environment="production",scope="team",team="payments",window="7d"} 0.5714285714285714
dora_window_deployments_per_day{component="",environment="production",scope="team",team="payments",window="30d"} 0.3333333333333333
dora_window_deployments_per_day{component="",environment="staging",scope="team",team="payments",window="7d"} 0
dora_window_deployments_per_day{component="",environment="staging",scope="team",team="payments",window="30d"} 0.06666666666666667
dora_window_deployments_per_day{component="",environment="production",scope="team",team="identity",window="7d"} 0.14285714285714285
dora_window_deployments_per_day{component="",environment="production",scope="team",team="identity",window="30d"} 0.06666666666666667
dora_window_deployments_per_day{component="",environment="production",scope="organization",team="",window="7d"} 0.7142857142857143
dora_window_deployments_per_day{component="",environment="production",scope="organization",team="",window="30d"} 0.4
dora_window_deployments_per_day{component="",environment="staging",scope="organization",team="",window="7d"} 0
dora_window_deployments_per_day{component="",environment="staging",scope="organization",team="",window="30d"} 0.06666666666666667
# HELP dora_window_deployment_dates Distinct UTC days with a successful non-redeploy deployment in the trailing window.
# TYPE dora_window_deployment_dates gauge
dora_window_deployment_dates{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 2
dora_window_deployment_dates{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 5
dora_window_deployment_dates{component="checkout-api",environment="staging",scope="component",team="payments",window="7d"} 0
dora_window_deployment_dates{component="checkout-api",environment="staging",scope="component",team="payments",window="30d"} 2
dora_window_deployment_dates{component="cart",environment="production",scope="component",team="payments",window="7d"} 1
dora_window_deployment_dates{component="cart",environment="production",scope="component",team="payments",window="30d"} 3
dora_window_deployment_dates{component="login",environment="production",scope="component",team="identity",window="7d"} 1
dora_window_deployment_dates{component="login",environment="production",scope="component",team="identity",window="30d"} 2
dora_window_deployment_dates{component="",environment="production",scope="team",team="payments",window="7d"} 3
dora_window_deployment_dates{component="",environment="production",scope="team",team="payments",window="30d"} 8
dora_window_deployment_dates{component="",environment="staging",scope="team",team="payments",window="7d"} 0
dora_window_deployment_dates{component="",environment="staging",scope="team",team="payments",window="30d"} 2
dora_window_deployment_dates{component="",environment="production",scope="team",team="identity",window="7d"} 1
dora_window_deployment_dates{component="",environment="production",scope="team",team="identity",window="30d"} 2
dora_window_deployment_dates{component="",environment="production",scope="organization",team="",window="7d"} 4
dora_window_deployment_dates{component="",environment="production",scope="organization",team="",window="30d"} 10
dora_window_deployment_dates{component="",environment="staging",scope="organization",team="",window="7d"} 0
dora_window_deployment_dates{component="",environment="staging",scope="organization",team="",window="30d"} 2
# HELP dora_window_change_lead_time_median_seconds Exact median change lead time of the commits first deployed in the trailing window.
# TYPE dora_window_change_lead_time_median_seconds gauge
dora_window_change_lead_time_median_seconds{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 64800
dora_window_change_lead_time_median_seconds{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 86400
dora_window_change_lead_time_median_seconds{component="checkout-api",environment="staging",scope="component",team="payments",window="30d"} 79200
dora_window_change_lead_time_median_seconds{component="cart",environment="production",scope="component",team="payments",window="7d"} 86400
dora_window_change_lead_time_median_seconds{component="cart",environment="production",scope="component",team="payments",window="30d"} 44100
dora_window_change_lead_time_median_seconds{component="login",environment="production",scope="component",team="identity",window="7d"} 21600
dora_window_change_lead_time_median_seconds{component="login",environment="production",scope="component",team="identity",window="30d"} 399600
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="team",team="payments",window="7d"} 86400
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="team",team="payments",window="30d"} 86400
dora_window_change_lead_time_median_seconds{component="",environment="staging",scope="team",team="payments",window="30d"} 79200
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="team",team="identity",window="7d"} 21600
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="team",team="identity",window="30d"} 399600
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="organization",team="",window="7d"} 64800
dora_window_change_lead_time_median_seconds{component="",environment="production",scope="organization",team="",window="30d"} 86400
dora_window_change_lead_time_median_seconds{component="",environment="staging",scope="organization",team="",window="30d"} 79200
# HELP dora_window_change_fail_ratio Change fail rate: change failures among the deployments finished in the trailing window, divided by them.
# TYPE dora_window_change_fail_ratio gauge
dora_window_change_fail_ratio{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 0.3333333333333333
dora_window_change_fail_ratio{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 0.42857142857142855
dora_window_change_fail_ratio{component="checkout-api",environment="staging",scope="component",team="payments",window="30d"} 0
dora_window_change_fail_ratio{component="cart",environment="production",scope="component",team="payments",window="7d"} 1
dora_window_change_fail_ratio{component="cart",environment="production",scope="component",team="payments",window="30d"} 0.6666666666666666
dora_window_change_fail_ratio{component="login",environment="production",scope="component",team="identity",window="7d"} 0
dora_window_change_fail_ratio{component="login",environment="production",scope="component",team="identity",window="30d"} 0
dora_window_change_fail_ratio{component="",environment="production",scope="team",team="payments",window="7d"} 0.5
dora_window_change_fail_ratio{component="",environment="production",scope="team",team="payments",window="30d"} 0.5
dora_window_change_fail_ratio{component="",environment="staging",scope="team",team="payments",window="30d"} 0
dora_window_change_fail_ratio{component="",environment="production",scope="team",team="identity",window="7d"} 0
dora_window_change_fail_ratio{component="",environment="production",scope="team",team="identity",window="30d"} 0
dora_window_change_fail_ratio{component="",environment="production",scope="organization",team="",window="7d"} 0.4
dora_window_change_fail_ratio{component="",environment="production",scope="organization",team="",window="30d"} 0.4166666666666667
dora_window_change_fail_ratio{component="",environment="staging",scope="organization",team="",window="30d"} 0
# HELP dora_window_rework_ratio Deployment rework rate: rework deployments among the deployments finished in the trailing window, divided by them.
# TYPE dora_window_rework_ratio gauge
dora_window_rework_ratio{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 0.3333333333333333
dora_window_rework_ratio{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 0.2857142857142857
dora_window_rework_ratio{component="checkout-api",environment="staging",scope="component",team="payments",window="30d"} 0
dora_window_rework_ratio{component="cart",environment="production",scope="component",team="payments",window="7d"} 1
dora_window_rework_ratio{component="cart",environment="production",scope="component",team="payments",window="30d"} 0.3333333333333333
dora_window_rework_ratio{component="login",environment="production",scope="component",team="identity",window="7d"} 0
dora_window_rework_ratio{component="login",environment="production",scope="component",team="identity",window="30d"} 0
dora_window_rework_ratio{component="",environment="production",scope="team",team="payments",window="7d"} 0.5
dora_window_rework_ratio{component="",environment="production",scope="team",team="payments",window="30d"} 0.3
dora_window_rework_ratio{component="",environment="staging",scope="team",team="payments",window="30d"} 0
dora_window_rework_ratio{component="",environment="production",scope="team",team="identity",window="7d"} 0
dora_window_rework_ratio{component="",environment="production",scope="team",team="identity",window="30d"} 0
dora_window_rework_ratio{component="",environment="production",scope="organization",team="",window="7d"} 0.4
dora_window_rework_ratio{component="",environment="production",scope="organization",team="",window="30d"} 0.25
dora_window_rework_ratio{component="",environment="staging",scope="organization",team="",window="30d"} 0
# HELP dora_window_failed_deployment_recovery_median_seconds Exact median failed deployment recovery time of the recovered change failures deployed in the trailing window.
# TYPE dora_window_failed_deployment_recovery_median_seconds gauge
dora_window_failed_deployment_recovery_median_seconds{component="checkout-api",environment="production",scope="component",team="payments",window="7d"} 3600
dora_window_failed_deployment_recovery_median_seconds{component="checkout-api",environment="production",scope="component",team="payments",window="30d"} 3600
dora_window_failed_deployment_recovery_median_seconds{component="cart",environment="production",scope="component",team="payments",window="30d"} 604800
dora_window_failed_deployment_recovery_median_seconds{component="",environment="production",scope="team",team="payments",window="7d"} 3600
dora_window_failed_deployment_recovery_median_seconds{component="",environment="production",scope="team",team="payments",window="30d"} 12600
dora_window_failed_deployment_recovery_median_seconds{component="",environment="production",scope="organization",team="",window="7d"} 3600
dora_window_failed_deployment_recovery_median_seconds{component="",environment="production",scope="organization",team="",window="30d"} 12600
`

const levelsWant = `
# HELP dora_performance_level Performance level against the configured benchmark set, production only: 4 elite, 3 high, 2 medium, 1 low; absent without data.
# TYPE dora_performance_level gauge
dora_performance_level{component="checkout-api",environment="production",metric="deployment_frequency",scope="component",team="payments",window="7d"} 3
dora_performance_level{component="checkout-api",environment="production",metric="lead_time",scope="component",team="payments",window="7d"} 4
dora_performance_level{component="checkout-api",environment="production",metric="change_fail_rate",scope="component",team="payments",window="7d"} 1
dora_performance_level{component="checkout-api",environment="production",metric="recovery_time",scope="component",team="payments",window="7d"} 3
dora_performance_level{component="checkout-api",environment="production",metric="deployment_frequency",scope="component",team="payments",window="30d"} 3
dora_performance_level{component="checkout-api",environment="production",metric="lead_time",scope="component",team="payments",window="30d"} 3
dora_performance_level{component="checkout-api",environment="production",metric="change_fail_rate",scope="component",team="payments",window="30d"} 1
dora_performance_level{component="checkout-api",environment="production",metric="recovery_time",scope="component",team="payments",window="30d"} 3
dora_performance_level{component="cart",environment="production",metric="deployment_frequency",scope="component",team="payments",window="7d"} 3
dora_performance_level{component="cart",environment="production",metric="lead_time",scope="component",team="payments",window="7d"} 3
dora_performance_level{component="cart",environment="production",metric="change_fail_rate",scope="component",team="payments",window="7d"} 1
dora_performance_level{component="cart",environment="production",metric="deployment_frequency",scope="component",team="payments",window="30d"} 2
dora_performance_level{component="cart",environment="production",metric="lead_time",scope="component",team="payments",window="30d"} 4
dora_performance_level{component="cart",environment="production",metric="change_fail_rate",scope="component",team="payments",window="30d"} 1
dora_performance_level{component="cart",environment="production",metric="recovery_time",scope="component",team="payments",window="30d"} 1
dora_performance_level{component="login",environment="production",metric="deployment_frequency",scope="component",team="identity",window="7d"} 3
dora_performance_level{component="login",environment="production",metric="lead_time",scope="component",team="identity",window="7d"} 4
dora_performance_level{component="login",environment="production",metric="change_fail_rate",scope="component",team="identity",window="7d"} 4
dora_performance_level{component="login",environment="production",metric="deployment_frequency",scope="component",team="identity",window="30d"} 2
dora_performance_level{component="login",environment="production",metric="lead_time",scope="component",team="identity",window="30d"} 3
dora_performance_level{component="login",environment="production",metric="change_fail_rate",scope="component",team="identity",window="30d"} 4
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="team",team="payments",window="7d"} 3
dora_performance_level{component="",environment="production",metric="lead_time",scope="team",team="payments",window="7d"} 3
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="team",team="payments",window="7d"} 1
dora_performance_level{component="",environment="production",metric="recovery_time",scope="team",team="payments",window="7d"} 3
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="team",team="payments",window="30d"} 3
dora_performance_level{component="",environment="production",metric="lead_time",scope="team",team="payments",window="30d"} 3
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="team",team="payments",window="30d"} 1
dora_performance_level{component="",environment="production",metric="recovery_time",scope="team",team="payments",window="30d"} 3
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="team",team="identity",window="7d"} 3
dora_performance_level{component="",environment="production",metric="lead_time",scope="team",team="identity",window="7d"} 4
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="team",team="identity",window="7d"} 4
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="team",team="identity",window="30d"} 2
dora_performance_level{component="",environment="production",metric="lead_time",scope="team",team="identity",window="30d"} 3
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="team",team="identity",window="30d"} 4
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="organization",team="",window="7d"} 3
dora_performance_level{component="",environment="production",metric="lead_time",scope="organization",team="",window="7d"} 4
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="organization",team="",window="7d"} 1
dora_performance_level{component="",environment="production",metric="recovery_time",scope="organization",team="",window="7d"} 3
dora_performance_level{component="",environment="production",metric="deployment_frequency",scope="organization",team="",window="30d"} 3
dora_performance_level{component="",environment="production",metric="lead_time",scope="organization",team="",window="30d"} 3
dora_performance_level{component="",environment="production",metric="change_fail_rate",scope="organization",team="",window="30d"} 1
dora_performance_level{component="",environment="production",metric="recovery_time",scope="organization",team="",window="30d"} 3
# HELP doraflow_metrics_exporter_benchmark_info The benchmark set dora_performance_level rates against; always 1.
# TYPE doraflow_metrics_exporter_benchmark_info gauge
doraflow_metrics_exporter_benchmark_info{benchmark="dora2023"} 1
`

const qualityWant = `
# HELP doraflow_metrics_exporter_deployment_quality_flags_total Enrichment quality flags on deployments, by environment and flag.
# TYPE doraflow_metrics_exporter_deployment_quality_flags_total counter
doraflow_metrics_exporter_deployment_quality_flags_total{environment="production",flag="first_deployment"} 2
doraflow_metrics_exporter_deployment_quality_flags_total{environment="production",flag="no_app_sha"} 1
doraflow_metrics_exporter_deployment_quality_flags_total{environment="staging",flag="first_deployment"} 1
doraflow_metrics_exporter_deployment_quality_flags_total{environment="unknown",flag="unknown_environment"} 1
# HELP doraflow_metrics_exporter_deployments_excluded_total Deployments excluded from every DORA number, by reason (unknown_environment).
# TYPE doraflow_metrics_exporter_deployments_excluded_total counter
doraflow_metrics_exporter_deployments_excluded_total{reason="unknown_environment"} 1
# HELP doraflow_metrics_exporter_signal_deployments Deployments named by change-failure signals, by state: joined, deployment_unknown (not seen yet), deployment_not_a_change (failed or redeploy).
# TYPE doraflow_metrics_exporter_signal_deployments gauge
doraflow_metrics_exporter_signal_deployments{state="deployment_not_a_change"} 1
doraflow_metrics_exporter_signal_deployments{state="deployment_unknown"} 1
doraflow_metrics_exporter_signal_deployments{state="joined"} 3
# HELP doraflow_metrics_exporter_commits Distinct commits per component and environment, by lead-time outcome: measured, no_commit_time, commit_after_deployment.
# TYPE doraflow_metrics_exporter_commits gauge
doraflow_metrics_exporter_commits{lead_time="commit_after_deployment"} 1
doraflow_metrics_exporter_commits{lead_time="measured"} 14
doraflow_metrics_exporter_commits{lead_time="no_commit_time"} 1
# HELP doraflow_metrics_exporter_incidents Incidents by how they are attributed to a deployment: the enricher's reason, the exporter's fallback, or unlinked.
# TYPE doraflow_metrics_exporter_incidents gauge
doraflow_metrics_exporter_incidents{link="explicit"} 0
doraflow_metrics_exporter_incidents{link="exporter_last_production_deployment_of_component"} 2
doraflow_metrics_exporter_incidents{link="last_production_deployment_of_component"} 0
doraflow_metrics_exporter_incidents{link="too_old"} 0
doraflow_metrics_exporter_incidents{link="unlinked"} 1
# HELP doraflow_metrics_exporter_state_objects Objects held in memory, by kind.
# TYPE doraflow_metrics_exporter_state_objects gauge
doraflow_metrics_exporter_state_objects{kind="commit"} 16
doraflow_metrics_exporter_state_objects{kind="deployment"} 17
doraflow_metrics_exporter_state_objects{kind="deployment_alias"} 0
doraflow_metrics_exporter_state_objects{kind="deployment_placeholder"} 1
doraflow_metrics_exporter_state_objects{kind="incident"} 3
doraflow_metrics_exporter_state_objects{kind="signal_or_incident_state"} 10
# HELP doraflow_metrics_exporter_evaluation_timestamp_seconds The time the trailing windows end at, as a Unix time (the clock, or metrics.evaluation_time).
# TYPE doraflow_metrics_exporter_evaluation_timestamp_seconds gauge
doraflow_metrics_exporter_evaluation_timestamp_seconds 1.7741376e+09
`
