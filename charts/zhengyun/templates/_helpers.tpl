{{- define "zhengyun.name" -}}zhengyun-operator{{- end -}}

{{- define "zhengyun.labels" -}}
app.kubernetes.io/name: {{ include "zhengyun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "zhengyun.selector" -}}
app.kubernetes.io/name: {{ include "zhengyun.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "zhengyun.fullname" -}}
{{- if eq .Release.Name "zhengyun" -}}zhengyun-operator{{- else -}}{{ printf "%s-zhengyun-operator" .Release.Name | trunc 63 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "zhengyun.gatewayImage" -}}
{{- if .Values.gateway.image.repository -}}
{{ .Values.gateway.image.repository }}:{{ .Values.gateway.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "zhengyun.isolationGateImage" -}}
{{- if .Values.isolationGate.image.repository -}}
{{ .Values.isolationGate.image.repository }}:{{ .Values.isolationGate.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "zhengyun.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
