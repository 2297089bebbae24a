{{/*
The chart's name, truncated to a DNS label.
*/}}
{{- define "flotilla-agent.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The name of the release's objects. The agent's ServiceAccount, ClusterRole and
ClusterRoleBinding carry exactly this name, and the agent is told it (--agent-name) so that
it refuses states that would change them.
*/}}
{{- define "flotilla-agent.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flotilla-agent.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla-agent.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla-agent.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla-agent.labels" -}}
helm.sh/chart: {{ include "flotilla-agent.chart" . }}
{{ include "flotilla-agent.selectorLabels" . }}
app.kubernetes.io/version: {{ (default .Chart.AppVersion .Values.image.tag) | quote }}
app.kubernetes.io/component: agent
app.kubernetes.io/part-of: flotilla
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "flotilla-agent.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret holding the bootstrap token (key `token`), or "" when there is none. */}}
{{- define "flotilla-agent.bootstrapSecret" -}}
{{- if .Values.bootstrap.existingSecret }}
{{- .Values.bootstrap.existingSecret }}
{{- else if .Values.bootstrap.token }}
{{- printf "%s-bootstrap" (include "flotilla-agent.fullname" .) }}
{{- end }}
{{- end }}

{{- define "flotilla-agent.identitySecret" -}}
{{- default (printf "%s-identity" (include "flotilla-agent.fullname" .)) .Values.identitySecret }}
{{- end }}

{{- define "flotilla-agent.leaseName" -}}
{{- default (include "flotilla-agent.fullname" .) .Values.lease.name }}
{{- end }}

{{/* "true" when rbac.restrict lists namespaces or kinds. */}}
{{- define "flotilla-agent.restricted" -}}
{{- if or .Values.rbac.restrict.namespaces .Values.rbac.restrict.kinds }}true{{ end }}
{{- end }}

{{/*
RBAC rules for what the agent may change: one rule per listed kind, or every resource when
no kinds are listed.
*/}}
{{- define "flotilla-agent.workRules" -}}
{{- if .Values.rbac.restrict.kinds }}
{{- range .Values.rbac.restrict.kinds }}
- apiGroups: [{{ .group | quote }}]
  resources: [{{ .resource | quote }}]
  verbs: ["*"]
{{- end }}
{{- else }}
- apiGroups: ["*"]
  resources: ["*"]
  verbs: ["*"]
{{- end }}
{{- end }}

{{/*
Read-only discovery, which a restricted agent still needs cluster-wide: the API groups and
version (to resolve kinds and report them to the hub), namespaces (its own and those it
applies into) and CRDs (to wait until the ones it applies are Established).
*/}}
{{- define "flotilla-agent.discoveryRules" -}}
- nonResourceURLs: ["/api", "/api/*", "/apis", "/apis/*", "/version", "/openapi", "/openapi/*"]
  verbs: ["get"]
- apiGroups: [""]
  resources: ["namespaces"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["apiextensions.k8s.io"]
  resources: ["customresourcedefinitions"]
  verbs: ["get", "list", "watch"]
{{- end }}

{{/* The kind in --allow-kind's form: `Kind` for the core group, else `group/Kind`. */}}
{{- define "flotilla-agent.allowKind" -}}
{{- if .group }}{{ printf "%s/%s" .group .kind }}{{ else }}{{ .kind }}{{ end }}
{{- end }}
