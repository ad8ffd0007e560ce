{{/*
Helpers of the zoo-replicate chart. The RayJob spec here mirrors replicate/k8s/manifest.py
(what `replicate k8s submit` creates); tests/k8s renders both and compares them.
*/}}

{{- define "zoo-replicate.name" -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}

{{- define "zoo-replicate.labels" -}}
app.kubernetes.io/name: zoo-replicate
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "zoo-replicate.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "zoo-replicate.name" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "zoo-replicate.image" -}}
{{- printf "%s:%s" .Values.image.repository .Values.image.tag -}}
{{- end -}}

{{/* Pod Security Standard "restricted" plus a read-only root; UID 1000 is the image's user. */}}
{{- define "zoo-replicate.securityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "zoo-replicate.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 1000
runAsGroup: 1000
fsGroup: 1000
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "zoo-replicate.claim" -}}
{{- $spec := index .root.Values.storage .role -}}
{{- default (printf "%s-%s" .root.Release.Name .role) $spec.existingClaim -}}
{{- end -}}

{{/* Shared claims plus writable scratch for the read-only root (/tmp holds Ray's /tmp/ray). */}}
{{- define "zoo-replicate.rayVolumes" -}}
- name: datasets
  persistentVolumeClaim:
    claimName: {{ include "zoo-replicate.claim" (dict "root" . "role" "datasets") }}
    readOnly: true
- name: checkpoints
  persistentVolumeClaim:
    claimName: {{ include "zoo-replicate.claim" (dict "root" . "role" "checkpoints") }}
- name: results
  persistentVolumeClaim:
    claimName: {{ include "zoo-replicate.claim" (dict "root" . "role" "results") }}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.storage.tmpSizeLimit }}
- name: home
  emptyDir:
    sizeLimit: 1Gi
- name: dshm
  emptyDir:
    medium: Memory
    sizeLimit: {{ .Values.storage.shmSizeLimit }}
{{- end -}}

{{- define "zoo-replicate.rayVolumeMounts" -}}
- name: datasets
  mountPath: {{ .Values.storage.datasets.mountPath }}
  readOnly: true
- name: results
  mountPath: {{ .Values.storage.results.mountPath }}
- name: checkpoints
  mountPath: {{ .Values.storage.checkpoints.mountPath }}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/zoo
- name: dshm
  mountPath: /dev/shm
{{- end -}}

{{/* Secrets only by reference, and only to the head: the driver alone writes the store and
logs to W&B (replicate/loggers/wandb_logger.py). W&B project/entity/mode go to the entrypoint
as logger overrides. */}}
{{- define "zoo-replicate.rayEnv" -}}
{{- $v := .root.Values -}}
- name: HOME
  value: /home/zoo
- name: ZOO_DATA_ROOT
  value: {{ $v.storage.datasets.mountPath | quote }}
{{- if and .head $v.store.existingSecret.name }}
- name: ZOO_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.store.existingSecret.name }}
      key: {{ $v.store.existingSecret.key }}
{{- end }}
{{- if and .head $v.wandb.enabled $v.wandb.apiKeySecret.name }}
- name: WANDB_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ $v.wandb.apiKeySecret.name }}
      key: {{ $v.wandb.apiKeySecret.key }}
{{- end }}
{{- end -}}

{{- define "zoo-replicate.rayPod" -}}
{{- $root := .root -}}
metadata:
  labels:
    app.kubernetes.io/name: zoo-replicate
    app.kubernetes.io/instance: {{ $root.Release.Name }}
spec:
  securityContext:
    {{- include "zoo-replicate.podSecurityContext" $root | nindent 4 }}
  {{- /* Only the head with the autoscaler sidecar talks to the Kubernetes API. */}}
  automountServiceAccountToken: {{ .token | default false }}
  {{- with .group.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .group.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with $root.Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  containers:
    - name: {{ ternary "ray-head" "ray-worker" .head }}
      image: {{ include "zoo-replicate.image" $root }}
      imagePullPolicy: {{ $root.Values.image.pullPolicy }}
      env:
        {{- include "zoo-replicate.rayEnv" (dict "root" $root "head" .head) | nindent 8 }}
      resources:
        {{- toYaml .group.resources | nindent 8 }}
      securityContext:
        {{- include "zoo-replicate.securityContext" $root | nindent 8 }}
      volumeMounts:
        {{- include "zoo-replicate.rayVolumeMounts" $root | nindent 8 }}
  volumes:
    {{- include "zoo-replicate.rayVolumes" $root | nindent 4 }}
{{- end -}}

{{/* One shell word: the entrypoint is a shell command line (Python writes it with shlex.join),
so a value with a space or a quote stays one argument. */}}
{{- define "zoo-replicate.shquote" -}}
'{{ replace "'" "'\"'\"'" . }}'
{{- end -}}

{{/* `replicate suite` on the head; the values' suiteOverrides are passed on. */}}
{{- define "zoo-replicate.entrypoint" -}}
{{- $args := list "replicate" "suite" (printf "suite=%s" .Values.suite) "scheduler=kuberay" (printf "results_dir=%s" .Values.storage.results.mountPath) -}}
{{- if .Values.store.existingSecret.name }}{{ $args = append $args "store=postgres" }}{{ end -}}
{{- $w := .Values.wandb -}}
{{- if $w.enabled -}}
{{- $project := include "zoo-replicate.shquote" (printf "logger.project=%s" $w.project) -}}
{{- $args = concat $args (list "logger=wandb" $project (printf "logger.mode=%s" (ternary $w.mode "offline" (ne $w.apiKeySecret.name "")))) -}}
{{- if $w.entity }}{{ $args = append $args (include "zoo-replicate.shquote" (printf "logger.entity=%s" $w.entity)) }}{{ end -}}
{{- else -}}
{{- $args = append $args "logger=none" -}}
{{- end -}}
{{- range .Values.suiteOverrides }}{{ $args = append $args (include "zoo-replicate.shquote" .) }}{{ end -}}
{{- join " " $args -}}
{{- end -}}

{{/* minReplicas > maxReplicas fails the install, in both schedule modes. Python refuses it for
the groups a suite needs (replicate/k8s/manifest.py _group_values); Helm cannot know which
those are, so every group is checked. */}}
{{- define "zoo-replicate.checkWorkerGroups" -}}
{{- range $name, $g := .Values.workerGroups }}
{{- if gt (int $g.minReplicas) (int $g.maxReplicas) }}
{{- fail (printf "workerGroups.%s.minReplicas: %d is more than maxReplicas %d" $name (int $g.minReplicas) (int $g.maxReplicas)) }}
{{- end }}
{{- end }}
{{- end -}}

{{/* A group's rayStartParams plus `accelerator_type:<acceleratorType>: 1` in `resources` (JSON in
single quotes), as manifest.ray_start_params writes it: the KubeRay autoscaler learns what a
group offers only from rayStartParams and limits, and jobs of such a profile ask for it. */}}
{{- define "zoo-replicate.rayStartParams" -}}
{{- $params := deepCopy .group.rayStartParams -}}
{{- $kind := .group.acceleratorType -}}
{{- if $kind }}
{{- $custom := dict }}
{{- with $params.resources }}{{ $custom = fromJson (trimAll "'" .) }}{{ end }}
{{- if hasKey $custom "Error" }}
{{- fail (printf "workerGroups.%s.rayStartParams.resources: not JSON: %s" .name (get $custom "Error")) }}
{{- end }}
{{- $_ := set $custom (printf "accelerator_type:%s" $kind) 1 }}
{{- $_ := set $params "resources" (printf "'%s'" (toJson $custom)) }}
{{- end }}
{{- toYaml $params }}
{{- end -}}

{{/* The RayJob spec: the enabled worker groups (Helm ranges over a map in key order). A group
without `enabled` counts as enabled, as in Python (manifest._group_values). */}}
{{- define "zoo-replicate.rayJobSpec" -}}
{{- $root := . -}}
{{- $groups := dict -}}
{{- range $name, $g := .Values.workerGroups }}{{ if or (not (hasKey $g "enabled")) $g.enabled }}{{ $_ := set $groups $name $g }}{{ end }}{{ end -}}
{{- if not $groups }}{{ fail "workerGroups: no group is enabled; the RayCronJob would have no worker to run the suite on" }}{{ end -}}
{{- $autoscale := false -}}
{{- range $name, $g := $groups }}{{ if lt (int $g.minReplicas) (int $g.maxReplicas) }}{{ $autoscale = true }}{{ end }}{{ end -}}
entrypoint: {{ include "zoo-replicate.entrypoint" . | quote }}
shutdownAfterJobFinishes: {{ .Values.rayJob.shutdownAfterJobFinishes }}
ttlSecondsAfterFinished: {{ .Values.rayJob.ttlSecondsAfterFinished }}
backoffLimit: {{ .Values.rayJob.backoffLimit }}
activeDeadlineSeconds: {{ .Values.rayJob.activeDeadlineSeconds }}
preRunningDeadlineSeconds: {{ .Values.rayJob.preRunningDeadlineSeconds }}
submitterPodTemplate:
  spec:
    restartPolicy: Never
    securityContext:
      {{- include "zoo-replicate.podSecurityContext" . | nindent 6 }}
    automountServiceAccountToken: false
    containers:
      - name: ray-job-submitter
        image: {{ include "zoo-replicate.image" . }}
        imagePullPolicy: {{ .Values.image.pullPolicy }}
        env:
          - name: HOME
            value: /home/zoo
        resources:
          {{- toYaml .Values.submitter.resources | nindent 10 }}
        securityContext:
          {{- include "zoo-replicate.securityContext" . | nindent 10 }}
        volumeMounts:
          - {name: tmp, mountPath: /tmp}
          - {name: home, mountPath: /home/zoo}
    volumes:
      - {name: tmp, emptyDir: {sizeLimit: 1Gi}}
      - {name: home, emptyDir: {sizeLimit: 1Gi}}
rayClusterSpec:
  rayVersion: {{ .Values.rayVersion | quote }}
  enableInTreeAutoscaling: {{ $autoscale }}
  {{- if $autoscale }}
  autoscalerOptions:
    idleTimeoutSeconds: {{ .Values.autoscaler.idleTimeoutSeconds }}
    resources:
      {{- toYaml .Values.autoscaler.resources | nindent 6 }}
    securityContext:
      {{- include "zoo-replicate.securityContext" . | nindent 6 }}
    env:
      - {name: HOME, value: /home/zoo}
    volumeMounts:
      - {name: tmp, mountPath: /tmp}
      - {name: home, mountPath: /home/zoo}
  {{- end }}
  headGroupSpec:
    rayStartParams:
      {{- toYaml .Values.head.rayStartParams | nindent 6 }}
    template:
      {{- include "zoo-replicate.rayPod" (dict "root" . "head" true "group" .Values.head "token" $autoscale) | nindent 6 }}
  workerGroupSpecs:
  {{- range $name, $g := $groups }}
    - groupName: {{ replace "_" "-" $name }}
      replicas: {{ $g.minReplicas }}
      minReplicas: {{ $g.minReplicas }}
      maxReplicas: {{ $g.maxReplicas }}
      numOfHosts: {{ $g.numOfHosts }}
      rayStartParams:
        {{- include "zoo-replicate.rayStartParams" (dict "group" $g "name" $name) | nindent 8 }}
      template:
        {{- include "zoo-replicate.rayPod" (dict "root" $root "head" false "group" $g) | nindent 8 }}
  {{- end }}
{{- end -}}
