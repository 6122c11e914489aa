{{/* Full name of the release's objects. */}}
{{- define "voice-operator.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Name of the operator's ServiceAccount. */}}
{{- define "voice-operator.serviceAccountName" -}}
{{- default (include "voice-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{/* Labels that select the operator's pods (never change them: selectors are immutable). */}}
{{- define "voice-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of every object. */}}
{{- define "voice-operator.labels" -}}
{{ include "voice-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: voice-agents
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* The operator as a subject of bindings. */}}
{{- define "voice-operator.subject" -}}
- kind: ServiceAccount
  name: {{ include "voice-operator.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end -}}

{{/* The operator image: repository, then @digest or :tag (default: the chart's appVersion). */}}
{{- define "voice-operator.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* Labels that select the agents' pods, as the operator sets them on every VoiceAgent's pods. */}}
{{- define "voice-operator.agentSelector" -}}
app.kubernetes.io/name: voice-agent
app.kubernetes.io/managed-by: voice-operator
{{- end -}}

{{/* namespaceSelector of the agents' monitors: the watched namespaces, else all. */}}
{{- define "voice-operator.agentNamespaceSelector" -}}
{{- if .Values.watchNamespaces }}
matchNames:
  {{- toYaml .Values.watchNamespaces | nindent 2 }}
{{- else }}
any: true
{{- end }}
{{- end -}}

{{/*
Relabelings shared by the agents' monitors: every series gets `voiceagent` (the VoiceAgent's
name) so the dashboard and alerts group by agent whichever monitor scraped it (`namespace` and
`pod` are added by the Prometheus Operator).
*/}}
{{- define "voice-operator.agentRelabelings" -}}
- sourceLabels: [__meta_kubernetes_pod_label_app_kubernetes_io_instance]
  targetLabel: voiceagent
{{- end -}}
