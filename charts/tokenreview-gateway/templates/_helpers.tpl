{{/* Object names: the release name, with the chart name unless the release already has it. */}}
{{- define "tokenreview-gateway.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tokenreview-gateway.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "tokenreview-gateway.labels" -}}
{{ include "tokenreview-gateway.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tokenreview-gateway
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "tokenreview-gateway.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}
{{- end -}}

{{- define "tokenreview-gateway.configMapName" -}}
{{- .Values.existingConfigMap | default (printf "%s-config" (include "tokenreview-gateway.fullname" .)) -}}
{{- end -}}

{{/* Where the chart mounts the Secrets the config refers to. */}}
{{- define "tokenreview-gateway.callerTokenFile" -}}
/etc/tokenreview-gateway/caller-token/token
{{- end -}}
{{- define "tokenreview-gateway.logHashKeyFile" -}}
/etc/tokenreview-gateway/log-hash-key/key
{{- end -}}
{{- define "tokenreview-gateway.introspectionSecretFile" -}}
/etc/tokenreview-gateway/introspection/{{ . }}/client-secret
{{- end -}}

{{/*
The configuration file: .Values.config with the paths of the Secrets mounted by the chart filled
in, so a values file names a Secret once and cannot point the config at a file that is not there.
*/}}
{{- define "tokenreview-gateway.config" -}}
{{- $cfg := deepCopy .Values.config -}}
{{- if not (hasKey $cfg "server") }}{{ $_ := set $cfg "server" dict }}{{ end -}}
{{- if .Values.callerToken.existingSecret -}}
{{- $_ := set $cfg.server "auth" (dict "bearerTokenFile" (include "tokenreview-gateway.callerTokenFile" .)) -}}
{{- end -}}
{{- if .Values.logHashKey.existingSecret -}}
{{- if not (hasKey $cfg "logging") }}{{ $_ := set $cfg "logging" dict }}{{ end -}}
{{- $_ := set $cfg.logging "tokenHashKeyFile" (include "tokenreview-gateway.logHashKeyFile" .) -}}
{{- end -}}
{{- range $i, $s := .Values.introspectionSecrets -}}
{{- $found := false -}}
{{- range $e := ($cfg.introspection | default list) -}}
{{- if eq $e.name $s.endpoint -}}
{{- $found = true -}}
{{- if not (hasKey $e "clientAuthentication") }}{{ $_ := set $e "clientAuthentication" dict }}{{ end -}}
{{- $_ := set $e.clientAuthentication "clientSecretFile" (include "tokenreview-gateway.introspectionSecretFile" $i) -}}
{{- end -}}
{{- end -}}
{{- if not $found -}}
{{- fail (printf "introspectionSecrets[%d]: no config.introspection entry is named %q" $i $s.endpoint) -}}
{{- end -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* The port of a host:port listen address. */}}
{{- define "tokenreview-gateway.port" -}}
{{- regexFind "[0-9]+$" . -}}
{{- end -}}
