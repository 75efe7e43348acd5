package deploy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"

	"github.com/p2sp/p2sp/internal/testtool"
	"github.com/p2sp/p2sp/metrics"
)

// roles are the p2sp subcommands an image's first argument may pick.
var roles = []string{"tracker", "origin", "proxy", "demo"}

// decodeAll decodes every YAML document of a file into new values of T.
func decodeAll[T any](t *testing.T, file string) []T {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var out []T
	dec := yaml.NewDecoder(bytes.NewReader(b))
	for {
		var v T
		err := dec.Decode(&v)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		out = append(out, v)
	}
}

func TestEverythingParses(t *testing.T) {
	// Every YAML and JSON file under deploy/ parses: a typo never reaches
	// an operator's kubectl, compose or Grafana.
	n := 0
	err := filepath.WalkDir(".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		switch filepath.Ext(p) {
		case ".yaml", ".yml":
			if docs := decodeAll[any](t, p); len(docs) == 0 {
				t.Errorf("%s: no YAML document", p)
			}
		case ".json":
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				t.Errorf("%s: %v", p, err)
			}
		default:
			return nil
		}
		n++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 10 {
		t.Errorf("found %d YAML and JSON files under deploy/, want the compose, Prometheus, Grafana and Kubernetes files", n)
	}
}

// The parts of Kubernetes objects the checks read.
type (
	object struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Metadata   struct {
			Name      string            `yaml:"name"`
			Namespace string            `yaml:"namespace"`
			Labels    map[string]string `yaml:"labels"`
		} `yaml:"metadata"`
		Spec struct {
			Replicas *int `yaml:"replicas"`
			Selector any  `yaml:"selector"` // a map on Services, {matchLabels} on workloads
			Template struct {
				Metadata struct {
					Labels map[string]string `yaml:"labels"`
				} `yaml:"metadata"`
				Spec podSpec `yaml:"spec"`
			} `yaml:"template"`
			Ports []struct {
				Name       string `yaml:"name"`
				Port       int    `yaml:"port"`
				TargetPort any    `yaml:"targetPort"`
			} `yaml:"ports"`
		} `yaml:"spec"`
		StringData map[string]string `yaml:"stringData"`
		Data       map[string]string `yaml:"data"`
		Resources  []string          `yaml:"resources"` // Kustomization
	}
	podSpec struct {
		HostNetwork    bool        `yaml:"hostNetwork"`
		DNSPolicy      string      `yaml:"dnsPolicy"`
		Containers     []container `yaml:"containers"`
		InitContainers []container `yaml:"initContainers"`
		Volumes        []struct {
			Name                  string `yaml:"name"`
			PersistentVolumeClaim *struct {
				ClaimName string `yaml:"claimName"`
			} `yaml:"persistentVolumeClaim"`
			HostPath *struct {
				Path string `yaml:"path"`
			} `yaml:"hostPath"`
		} `yaml:"volumes"`
	}
	container struct {
		Name  string   `yaml:"name"`
		Image string   `yaml:"image"`
		Args  []string `yaml:"args"`
		Env   []struct {
			Name      string `yaml:"name"`
			Value     string `yaml:"value"`
			ValueFrom *struct {
				SecretKeyRef *struct {
					Name string `yaml:"name"`
					Key  string `yaml:"key"`
				} `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		} `yaml:"env"`
		Ports []struct {
			Name          string `yaml:"name"`
			ContainerPort int    `yaml:"containerPort"`
			HostPort      int    `yaml:"hostPort"`
		} `yaml:"ports"`
		StartupProbe   *probe `yaml:"startupProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		Resources      struct {
			Requests map[string]string `yaml:"requests"`
			Limits   map[string]string `yaml:"limits"`
		} `yaml:"resources"`
		VolumeMounts []struct {
			Name      string `yaml:"name"`
			MountPath string `yaml:"mountPath"`
		} `yaml:"volumeMounts"`
	}
	probe struct {
		HTTPGet *struct {
			Host string `yaml:"host"`
			Path string `yaml:"path"`
			Port any    `yaml:"port"`
		} `yaml:"httpGet"`
	}
)

// k8sObjects reads every object in deploy/k8s, by file, and the
// kustomization.
func k8sObjects(t *testing.T) (map[string][]object, object) {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs := map[string][]object{}
	var kust object
	for _, f := range files {
		if filepath.Base(f) == "kustomization.yaml" {
			kust = decodeAll[object](t, f)[0]
			continue
		}
		objs[filepath.Base(f)] = decodeAll[object](t, f)
	}
	return objs, kust
}

// flag returns the value following name in args.
func flag(args []string, name string) (string, bool) {
	i := slices.Index(args, name)
	if i < 0 || i+1 >= len(args) {
		return "", false
	}
	return args[i+1], true
}

func TestKubernetes(t *testing.T) {
	objs, kust := k8sObjects(t)

	// The kustomization applies every file, and only files that exist.
	var files []string
	for f := range objs {
		files = append(files, f)
	}
	slices.Sort(files)
	res := slices.Clone(kust.Resources)
	slices.Sort(res)
	if !slices.Equal(files, res) {
		t.Errorf("kustomization resources %v, want every manifest %v", kust.Resources, files)
	}

	byKind := map[string][]object{}
	for f, docs := range objs {
		for i, o := range docs {
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s document %d: apiVersion %q, kind %q, metadata.name %q: want all three", f, i+1, o.APIVersion, o.Kind, o.Metadata.Name)
			}
			if o.Kind != "Namespace" && o.Metadata.Namespace != "p2sp" {
				t.Errorf("%s: %s %s in namespace %q, want p2sp", f, o.Kind, o.Metadata.Name, o.Metadata.Namespace)
			}
			byKind[o.Kind] = append(byKind[o.Kind], o)
		}
	}
	find := func(kind, name string) *object {
		for i, o := range byKind[kind] {
			if o.Metadata.Name == name {
				return &byKind[kind][i]
			}
		}
		t.Fatalf("no %s %s", kind, name)
		return nil
	}
	secrets := map[string]map[string]string{}
	for _, s := range byKind["Secret"] {
		secrets[s.Metadata.Name] = s.StringData
	}
	pvcs := map[string]bool{}
	for _, p := range byKind["PersistentVolumeClaim"] {
		pvcs[p.Metadata.Name] = true
	}

	workloads := []struct {
		kind, name, role string
		secret           bool // reads P2SP_TOKEN from a Secret
	}{
		{"Deployment", "p2sp-tracker", "tracker", true},
		{"Deployment", "p2sp-origin", "origin", true},
		{"DaemonSet", "p2sp-proxy", "proxy", false},
	}
	for _, w := range workloads {
		t.Run(w.name, func(t *testing.T) {
			o := find(w.kind, w.name)
			sel, _ := o.Spec.Selector.(map[string]any)
			match, _ := sel["matchLabels"].(map[string]any)
			if len(match) == 0 {
				t.Fatalf("no selector.matchLabels")
			}
			for k, v := range match {
				if o.Spec.Template.Metadata.Labels[k] != v {
					t.Errorf("selector %s=%v does not match the pod template's labels %v", k, v, o.Spec.Template.Metadata.Labels)
				}
			}
			pod := o.Spec.Template.Spec
			vols := map[string]bool{}
			for _, v := range pod.Volumes {
				vols[v.Name] = true
				if v.PersistentVolumeClaim != nil && !pvcs[v.PersistentVolumeClaim.ClaimName] {
					t.Errorf("volume %s claims %s, which no manifest defines", v.Name, v.PersistentVolumeClaim.ClaimName)
				}
			}
			if len(pod.Containers) != 1 {
				t.Fatalf("%d containers, want the one p2sp container", len(pod.Containers))
			}
			c := pod.Containers[0]
			if !strings.HasPrefix(c.Image, "p2sp:") {
				t.Errorf("image %q, want the p2sp image (kustomization sets its registry)", c.Image)
			}
			if len(c.Args) == 0 || c.Args[0] != w.role {
				t.Errorf("args %v, want the %s subcommand first", c.Args, w.role)
			}
			listen, ok := flag(c.Args, "--listen")
			if !ok {
				t.Fatalf("args %v: no --listen", c.Args)
			}
			_, port, _ := strings.Cut(listen, ":")
			for name, p := range map[string]*probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
				want := map[string]string{"liveness": "/healthz", "readiness": "/readyz"}[name]
				switch {
				case p == nil || p.HTTPGet == nil:
					t.Errorf("no %s httpGet probe", name)
				case p.HTTPGet.Path != want:
					t.Errorf("%s probe on %s, want %s", name, p.HTTPGet.Path, want)
				case !probesPort(c, p.HTTPGet.Port, port):
					t.Errorf("%s probe port %v, want the --listen port %s", name, p.HTTPGet.Port, port)
				}
			}
			if c.Resources.Requests["cpu"] == "" || c.Resources.Requests["memory"] == "" || c.Resources.Limits["memory"] == "" {
				t.Errorf("resources %+v: want cpu and memory requests and a memory limit", c.Resources)
			}
			for _, m := range c.VolumeMounts {
				if !vols[m.Name] {
					t.Errorf("mount %s names no volume", m.Name)
				}
			}
			var ref string
			for _, e := range c.Env {
				if e.Name == "P2SP_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
					ref = e.ValueFrom.SecretKeyRef.Name + "/" + e.ValueFrom.SecretKeyRef.Key
					name, key, _ := strings.Cut(ref, "/")
					if _, ok := secrets[name][key]; !ok {
						t.Errorf("P2SP_TOKEN from secret %s key %s, which no manifest defines", name, key)
					}
				}
			}
			if w.secret != (ref != "") {
				t.Errorf("P2SP_TOKEN secret reference %q; want one: %v", ref, w.secret)
			}
			if w.kind != "DaemonSet" {
				return
			}
			// The proxy: one per node, BitTorrent on a host port, players
			// and probes on the node's loopback.
			if !pod.HostNetwork || pod.DNSPolicy != "ClusterFirstWithHostNet" {
				t.Errorf("hostNetwork %v, dnsPolicy %q: want true and ClusterFirstWithHostNet", pod.HostNetwork, pod.DNSPolicy)
			}
			if !strings.HasPrefix(listen, "127.0.0.1:") {
				t.Errorf("--listen %s, want the node's loopback", listen)
			}
			for _, p := range []*probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Host != "127.0.0.1" {
					t.Errorf("a probe is not an httpGet on host 127.0.0.1, where the proxy listens")
				}
			}
			bt, _ := flag(c.Args, "--bt-listen")
			_, btPort, _ := strings.Cut(bt, ":")
			found := false
			for _, p := range c.Ports {
				found = found || (fmt.Sprint(p.HostPort) == btPort && p.ContainerPort == p.HostPort)
			}
			if !found {
				t.Errorf("ports %+v: want the --bt-listen port %s as a hostPort", c.Ports, btPort)
			}
		})
	}

	// Each Service selects a workload's pods and targets a port its
	// container declares.
	services := map[string]object{}
	for _, svc := range byKind["Service"] {
		services[svc.Metadata.Name] = svc
		sel, _ := svc.Spec.Selector.(map[string]any)
		var target *object
		for _, o := range slices.Concat(byKind["Deployment"], byKind["DaemonSet"]) {
			ok := len(sel) > 0
			for k, v := range sel {
				ok = ok && o.Spec.Template.Metadata.Labels[k] == v
			}
			if ok {
				target = &o
			}
		}
		if target == nil {
			t.Errorf("Service %s selects %v: no workload's pods", svc.Metadata.Name, sel)
			continue
		}
		for _, p := range svc.Spec.Ports {
			if !probesPort(target.Spec.Template.Spec.Containers[0], p.TargetPort, "") {
				t.Errorf("Service %s targets port %v, which %s does not declare", svc.Metadata.Name, p.TargetPort, target.Metadata.Name)
			}
		}
	}
	for _, name := range []string{"p2sp-tracker", "p2sp-origin"} {
		find("Service", name)
	}

	// Two tracker replicas on the one Redis; the origin on S3-compatible
	// storage that a Service (or the outside) answers for.
	tr := find("Deployment", "p2sp-tracker")
	switch n := tr.Spec.Replicas; {
	case n == nil:
		t.Errorf("tracker replicas unset (1), want at least 2")
	case *n < 2:
		t.Errorf("tracker replicas %d, want at least 2", *n)
	}
	trArgs := tr.Spec.Template.Spec.Containers[0].Args
	store, _ := flag(trArgs, "--store")
	if _, ok := flag(trArgs, "--data-dir"); ok || !strings.HasPrefix(store, "redis://") {
		t.Errorf("tracker args %v: want --store redis://... and no --data-dir", trArgs)
	} else if err := reachesService(services, strings.Replace(store, "redis://", "tcp://", 1)); err != nil {
		t.Errorf("tracker --store %s: %v", store, err)
	}
	oc := find("Deployment", "p2sp-origin").Spec.Template.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range oc.Env {
		env[e.Name] = e.Value
		if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil {
			ref := e.ValueFrom.SecretKeyRef
			v, ok := secrets[ref.Name][ref.Key]
			if !ok {
				t.Errorf("origin env %s from secret %s key %s, which no manifest defines", e.Name, ref.Name, ref.Key)
			}
			env[e.Name] = v
		}
	}
	media, _ := flag(oc.Args, "--media")
	// Kubernetes expands $(VAR) in args from the container's env.
	if v, ok := strings.CutPrefix(media, "$("); ok {
		media = env[strings.TrimSuffix(v, ")")]
	}
	if !strings.HasPrefix(media, "s3://") {
		t.Errorf("origin --media %q, want s3://BUCKET/PREFIX", media)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		if env[k] == "" {
			t.Errorf("origin env has no %s", k)
		}
	}
	if ep := env["AWS_ENDPOINT_URL_S3"]; ep != "" {
		if err := reachesService(services, ep); err != nil {
			t.Errorf("origin S3 endpoint %s: %v", ep, err)
		}
	}
}

// reachesService checks that u (scheme://NAME.p2sp.svc...:PORT/...) names
// a Service of the manifests, and a port it serves.
func reachesService(services map[string]object, u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	name, _, _ := strings.Cut(pu.Hostname(), ".")
	svc, ok := services[name]
	if !ok {
		return fmt.Errorf("no Service %s", name)
	}
	for _, p := range svc.Spec.Ports {
		if fmt.Sprint(p.Port) == pu.Port() {
			return nil
		}
	}
	return fmt.Errorf("Service %s has no port %s", name, pu.Port())
}

// probesPort reports whether port (a number or a port name) is one c
// declares, and, when want is set, the number want.
func probesPort(c container, port any, want string) bool {
	for _, p := range c.Ports {
		if (port == p.Name || fmt.Sprint(port) == fmt.Sprint(p.ContainerPort)) && (want == "" || fmt.Sprint(p.ContainerPort) == want) {
			return true
		}
	}
	return false
}

// compose is the part of compose.yaml the checks read.
type compose struct {
	Services map[string]struct {
		Image string `yaml:"image"`
		Build struct {
			Context    string `yaml:"context"`
			Dockerfile string `yaml:"dockerfile"`
		} `yaml:"build"`
		Command     []string          `yaml:"command"`
		Volumes     []string          `yaml:"volumes"`
		Ports       []string          `yaml:"ports"`
		Environment map[string]string `yaml:"environment"`
		Networks    map[string]struct {
			Aliases []string `yaml:"aliases"`
		} `yaml:"networks"`
	} `yaml:"services"`
	Volumes map[string]any `yaml:"volumes"`
}

type promConfig struct {
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func TestCompose(t *testing.T) {
	c := decodeAll[compose](t, "compose.yaml")[0]
	prom := decodeAll[promConfig](t, "prometheus/prometheus.yml")[0]
	var targets []string
	for _, sc := range prom.ScrapeConfigs {
		for _, st := range sc.StaticConfigs {
			targets = append(targets, st.Targets...)
		}
	}
	for _, tc := range []struct{ service, role string }{
		{"tracker-a", "tracker"}, {"tracker-b", "tracker"}, {"origin", "origin"}, {"proxy1", "proxy"}, {"proxy2", "proxy"},
	} {
		s, ok := c.Services[tc.service]
		if !ok {
			t.Errorf("no %s service", tc.service)
			continue
		}
		if !strings.HasPrefix(s.Image, "p2sp:") || s.Build.Context == "" {
			t.Errorf("%s: image %q built from %q, want the p2sp image built from the repository", tc.service, s.Image, s.Build.Context)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", tc.service, err)
		}
		if len(s.Command) == 0 || s.Command[0] != tc.role {
			t.Errorf("%s: command %v, want the %s subcommand first", tc.service, s.Command, tc.role)
		}
		listen, _ := flag(s.Command, "--listen")
		_, port, _ := strings.Cut(listen, ":")
		if !slices.Contains(targets, tc.service+":"+port) {
			t.Errorf("Prometheus scrapes %v, not %s on its --listen port %s", targets, tc.service, port)
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if !strings.ContainsAny(src, "/$.") {
				if _, ok := c.Volumes[src]; !ok {
					t.Errorf("%s mounts volume %s, which compose.yaml does not declare", tc.service, src)
				}
			}
		}
	}
	// Two tracker replicas on the one Redis, both answering to the name
	// every --tracker URL uses; the origin on the S3 service.
	for _, name := range []string{"tracker-a", "tracker-b"} {
		tr := c.Services[name]
		store, _ := flag(tr.Command, "--store")
		if u, err := url.Parse(store); err != nil || u.Scheme != "redis" || !hasService(c, u.Hostname()) {
			t.Errorf("%s --store %q: want redis:// on a service of compose.yaml", name, store)
		}
		if !slices.Contains(tr.Networks["default"].Aliases, "tracker") {
			t.Errorf("%s networks %+v: want the alias tracker", name, tr.Networks)
		}
	}
	for name, svc := range c.Services {
		if u, ok := flag(svc.Command, "--tracker"); ok && u != "http://tracker:7070" {
			t.Errorf("%s --tracker %s, want http://tracker:7070 (both replicas)", name, u)
		}
	}
	origin := c.Services["origin"]
	media, _ := flag(origin.Command, "--media")
	endpoint, _ := flag(origin.Command, "--s3-endpoint")
	if !strings.HasPrefix(composeDefault(media), "s3://") {
		t.Errorf("origin --media %q, want s3://BUCKET/PREFIX by default", media)
	}
	if u, err := url.Parse(composeDefault(endpoint)); err != nil || !hasService(c, u.Hostname()) {
		t.Errorf("origin --s3-endpoint %q, want the s3 service by default", endpoint)
	}
	for _, k := range []string{"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION"} {
		if origin.Environment[k] == "" {
			t.Errorf("origin environment has no %s", k)
		}
	}
	for _, s := range []string{"prometheus", "grafana"} {
		svc, ok := c.Services[s]
		if !ok {
			t.Errorf("no %s service", s)
			continue
		}
		// Files mounted from deploy/ exist.
		for _, v := range svc.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", s, src, err)
				}
			}
		}
	}
}

// hasService reports whether compose.yaml has a service name.
func hasService(c compose, name string) bool {
	_, ok := c.Services[name]
	return ok
}

// composeDefault is the value of "${VAR:-default}" when VAR is unset.
func composeDefault(v string) string {
	if inner, ok := strings.CutPrefix(v, "${"); ok {
		if _, def, ok := strings.Cut(strings.TrimSuffix(inner, "}"), ":-"); ok {
			return def
		}
	}
	return v
}

func TestPrometheusConfig(t *testing.T) {
	promtool := testtool.Require(t, "promtool")
	out, err := exec.Command(promtool, "check", "config", "--syntax-only", "prometheus/prometheus.yml").CombinedOutput()
	if err != nil {
		t.Errorf("promtool check config: %v\n%s", err, out)
	}
}

// exported lists every series name the components export (histograms
// with their _bucket, _sum and _count) with the label values each label
// takes.
func exported(t *testing.T) map[string]map[string][]string {
	t.Helper()
	reg := metrics.NewRegistry()
	metrics.NewOrigin(reg)
	metrics.NewTracker(reg)
	metrics.NewProxy(reg)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]map[string][]string{}
	for _, mf := range mfs {
		labels := map[string][]string{}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = append(labels[l.GetName()], l.GetValue())
			}
		}
		out[mf.GetName()] = labels
		if mf.GetType().String() == "HISTOGRAM" {
			bucket := map[string][]string{"le": nil}
			for k, v := range labels {
				bucket[k] = v
			}
			out[mf.GetName()+"_bucket"] = bucket
			out[mf.GetName()+"_sum"] = labels
			out[mf.GetName()+"_count"] = labels
		}
	}
	return out
}

// dashboardExprs returns every PromQL expression in the dashboard.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("grafana/dashboards/p2sp.json")
	if err != nil {
		t.Fatal(err)
	}
	var d struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	for _, p := range d.Panels {
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	return exprs
}

var (
	metricName = regexp.MustCompile(`\bp2sp_[a-z0-9_]+`)
	selector   = regexp.MustCompile(`(p2sp_[a-z0-9_]+)\{([^}]*)\}`)
	matcher    = regexp.MustCompile(`([a-z_]+)\s*(=~|!~|!=|=)\s*"([^"]*)"`)
	grouping   = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
)

func TestDashboardUsesExportedMetrics(t *testing.T) {
	// A query on a name or label no component exports draws an empty
	// panel forever: every name, label and label value the dashboard asks
	// for is one the metrics package registers.
	have := exported(t)
	exprs := dashboardExprs(t)
	want := map[string]bool{}
	for _, e := range exprs {
		names := metricName.FindAllString(e, -1)
		if len(names) == 0 {
			t.Errorf("%s: queries no p2sp metric", e)
		}
		labels := map[string]bool{}
		for _, n := range names {
			want[strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")] = true
			ls, ok := have[n]
			if !ok {
				t.Errorf("%s: %s is not exported", e, n)
			}
			for l := range ls {
				labels[l] = true
			}
		}
		for _, sel := range selector.FindAllStringSubmatch(e, -1) {
			for _, m := range matcher.FindAllStringSubmatch(sel[2], -1) {
				values, ok := have[sel[1]][m[1]]
				if !ok {
					t.Errorf("%s: %s has no label %s", e, sel[1], m[1])
					continue
				}
				if m[2] == "=" || m[2] == "=~" {
					for _, v := range strings.Split(m[3], "|") {
						if !slices.Contains(values, v) {
							t.Errorf("%s: %s{%s} never takes the value %q (it takes %v)", e, sel[1], m[1], v, values)
						}
					}
				}
			}
		}
		for _, g := range grouping.FindAllStringSubmatch(e, -1) {
			for _, l := range strings.Split(g[1], ",") {
				if l = strings.TrimSpace(l); l != "" && !labels[l] {
					t.Errorf("%s: groups by %s, which none of its metrics has", e, l)
				}
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, m := range []string{
		"p2sp_proxy_bytes_total", "p2sp_proxy_time_to_first_byte_seconds", "p2sp_tracker_peers",
		"p2sp_proxy_verification_failures_total", "p2sp_proxy_stalls_total",
	} {
		if !want[m] {
			t.Errorf("the dashboard does not show %s", m)
		}
	}
}

func TestDashboardQueriesParse(t *testing.T) {
	// promtool parses each query (as a recording rule; Grafana's
	// $__rate_interval becomes a fixed range).
	promtool := testtool.Require(t, "promtool")
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range dashboardExprs(t) {
		e = strings.ReplaceAll(e, "$__rate_interval", "5m")
		q, _ := json.Marshal(e) // a JSON string is a YAML string
		fmt.Fprintf(&rules, "      - record: p2sp:dashboard_%d\n        expr: %s\n", i, q)
	}
	f := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

func TestDockerfile(t *testing.T) {
	// The image builds the one binary statically, runs it as a non-root
	// user for every subcommand, and documents the roles' default ports.
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var from, user, entrypoint, expose []string
	build := ""
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			from = append(from, strings.Join(f[1:], " "))
		case "USER":
			user = append(user, f[1])
		case "ENTRYPOINT":
			entrypoint = append(entrypoint, strings.Join(f[1:], " "))
		case "EXPOSE":
			expose = append(expose, f[1:]...)
		}
		if strings.Contains(line, "go build") || strings.Contains(line, "CGO_ENABLED") {
			build += line
		}
	}
	if len(from) < 2 || !strings.HasPrefix(from[0], "golang:1.26") {
		t.Errorf("FROM %v: want a golang:1.26 build stage, then a runtime stage", from)
	}
	if !strings.Contains(build, "CGO_ENABLED=0") || !strings.Contains(build, "./cmd/p2sp") {
		t.Errorf("build %q: want a static (CGO_ENABLED=0) build of ./cmd/p2sp", build)
	}
	if len(user) == 0 || user[len(user)-1] == "root" || strings.HasPrefix(user[len(user)-1], "0") {
		t.Errorf("USER %v: want a non-root user last", user)
	}
	if len(entrypoint) != 1 || entrypoint[0] != `["/p2sp"]` {
		t.Errorf("ENTRYPOINT %v, want [\"/p2sp\"]", entrypoint)
	}
	for _, p := range []string{"7070/tcp", "8080/tcp", "8090/tcp", "6881/tcp"} {
		if !slices.Contains(expose, p) {
			t.Errorf("EXPOSE %v: want %s", expose, p)
		}
	}
}

func TestDockerignoreKeepsTheBuild(t *testing.T) {
	// The build context keeps what `go build ./cmd/p2sp` reads: go.mod,
	// go.sum, and every Go file and embedded file of the packages it
	// builds.
	patterns := dockerignore(t)
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "-json=Dir,GoFiles,EmbedFiles,Standard", "./cmd/p2sp")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	need := []string{"go.mod", "go.sum"}
	dec := json.NewDecoder(bytes.NewReader(out))
	for {
		var pkg struct {
			Dir                 string
			GoFiles, EmbedFiles []string
			Standard            bool
		}
		if err := dec.Decode(&pkg); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel, err := filepath.Rel(root, pkg.Dir)
		if pkg.Standard || err != nil || strings.HasPrefix(rel, "..") {
			continue // the standard library, the module cache
		}
		for _, f := range append(pkg.GoFiles, pkg.EmbedFiles...) {
			need = append(need, path.Join(filepath.ToSlash(rel), f))
		}
	}
	if len(need) < 10 {
		t.Fatalf("go list named %d files of the build: %v", len(need), need)
	}
	for _, n := range need {
		if pat := ignoredBy(patterns, n); pat != "" {
			t.Errorf(".dockerignore pattern %q drops %s, which the build needs", pat, n)
		}
	}
}

// dockerignore reads ../.dockerignore's patterns.
func dockerignore(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if l := strings.TrimSpace(sc.Text()); l != "" && !strings.HasPrefix(l, "#") {
			out = append(out, l)
		}
	}
	return out
}

// ignoredBy returns the pattern that drops file (a slash path from the
// context's root), or "". It follows Docker's rules as far as the
// patterns in use need: a pattern drops the paths it matches and all
// beneath them, "**/" matches any number of leading directories, and a
// later "!" pattern brings a path back.
func ignoredBy(patterns []string, file string) string {
	by := ""
	for _, p := range patterns {
		neg := strings.HasPrefix(p, "!")
		p = strings.TrimPrefix(p, "!")
		if matchesPathOrParent(p, file) {
			if neg {
				by = ""
			} else {
				by = p
			}
		}
	}
	return by
}

func matchesPathOrParent(pattern, file string) bool {
	for f := file; f != "." && f != "/" && f != ""; f = path.Dir(f) {
		if match(pattern, f) {
			return true
		}
	}
	return false
}

func match(pattern, name string) bool {
	if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
		parts := strings.Split(name, "/")
		for i := range parts {
			if match(rest, strings.Join(parts[i:], "/")) {
				return true
			}
		}
		return false
	}
	ok, _ := path.Match(pattern, name)
	return ok
}

func TestFlagsExist(t *testing.T) {
	// Every flag the compose file and the manifests pass is one the
	// binary's subcommand defines: a renamed flag fails here, not in an
	// operator's crash loop.
	bin := filepath.Join(t.TempDir(), "p2sp")
	build := exec.Command("go", "build", "-o", bin, "./cmd/p2sp")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	defined := map[string][]string{}
	for _, role := range roles {
		out, _ := exec.Command(bin, role, "--help").CombinedOutput()
		for _, line := range strings.Split(string(out), "\n") {
			if f := strings.Fields(line); len(f) > 0 && strings.HasPrefix(f[0], "-") {
				defined[role] = append(defined[role], "-"+f[0])
			}
		}
		if len(defined[role]) == 0 {
			t.Fatalf("p2sp %s --help listed no flag:\n%s", role, out)
		}
	}
	uses := map[string][]string{} // where → args
	for name, s := range decodeAll[compose](t, "compose.yaml")[0].Services {
		if strings.HasPrefix(s.Image, "p2sp:") {
			uses["compose "+name] = s.Command
		}
	}
	objs, _ := k8sObjects(t)
	for f, docs := range objs {
		for _, o := range docs {
			for _, c := range o.Spec.Template.Spec.Containers {
				if strings.HasPrefix(c.Image, "p2sp:") {
					uses[f+" "+c.Name] = c.Args
				}
			}
		}
	}
	if len(uses) < 7 {
		t.Errorf("found %d uses of the image, want 4 in compose and 3 in k8s", len(uses))
	}
	for where, args := range uses {
		if len(args) == 0 || !slices.Contains(roles, args[0]) {
			t.Errorf("%s: args %v start with no subcommand", where, args)
			continue
		}
		for _, a := range args[1:] {
			name, _, _ := strings.Cut(a, "=")
			if strings.HasPrefix(name, "--") && !slices.Contains(defined[args[0]], name) {
				t.Errorf("%s: p2sp %s has no flag %s (it has %v)", where, args[0], name, defined[args[0]])
			}
		}
	}
}
