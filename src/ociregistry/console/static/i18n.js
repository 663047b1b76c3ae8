// Every string the console shows, in Simplified Chinese (the user guide's own wording) and
// English, in one catalogue. `t(key, vars)` fills `{name}` placeholders; an English entry
// may be `{one, other}` and is chosen by `vars.n`.

export const LANGS = ["zh-CN", "en"];
const STORAGE_KEY = "ociregistry.lang";

export const CATALOGUE = {
  // --- application and navigation
  "app.name": { "zh-CN": "容器镜像仓库", en: "Container Registry" },
  "app.section": { "zh-CN": "镜像仓库", en: "Registry" },
  "nav.main": { "zh-CN": "主导航", en: "Main navigation" },
  "nav.breadcrumbs": { "zh-CN": "位置", en: "Breadcrumbs" },
  "nav.registries": { "zh-CN": "用户镜像库", en: "User registries" },
  "nav.platform": { "zh-CN": "平台镜像", en: "Platform images" },
  "nav.shared": { "zh-CN": "分享镜像库", en: "Shared registries" },
  "nav.groups": { "zh-CN": "项目组", en: "Project groups" },
  "nav.tokens": { "zh-CN": "访问令牌", en: "Access tokens" },
  "nav.users": { "zh-CN": "用户管理", en: "Users" },
  "nav.audit": { "zh-CN": "审计日志", en: "Audit log" },
  "audit.intro": {
    "zh-CN": "每一次变更、删除、登录与登录失败：操作者、时间、客户端地址、请求 ID、对象与结果。平台管理员可见全部，镜像库所有者可见其镜像库的记录。",
    en: "Every change, deletion, sign-in and failed sign-in: actor, time, client address, request ID, target and outcome. Platform admins see all of it, registry owners their registries' events.",
  },
  "audit.empty": { "zh-CN": "暂无审计记录", en: "No audit events" },
  "audit.search": { "zh-CN": "按对象路径搜索（从词首）", en: "Search target paths (from a word's start)" },
  "audit.outcome.success": { "zh-CN": "成功", en: "Success" },
  "audit.outcome.denied": { "zh-CN": "拒绝", en: "Denied" },
  "audit.outcome.failure": { "zh-CN": "失败", en: "Failed" },
  "col.time": { "zh-CN": "时间", en: "Time" },
  "col.actor": { "zh-CN": "操作者", en: "Actor" },
  "col.action": { "zh-CN": "操作", en: "Action" },
  "col.target": { "zh-CN": "对象", en: "Target" },
  "col.client": { "zh-CN": "客户端地址", en: "Client address" },
  "col.outcome": { "zh-CN": "结果", en: "Outcome" },
  "col.requestId": { "zh-CN": "请求 ID", en: "Request ID" },
  // --- retention (issue 14, point 3)
  "retention.crumb": { "zh-CN": "镜像保留", en: "Retention" },
  "retention.title": { "zh-CN": "镜像保留：{name}", en: "Retention: {name}" },
  "retention.link": { "zh-CN": "镜像保留策略", en: "Retention policy" },
  "retention.intro": { "zh-CN": "规则按镜像与 Tag 的模式（可排除）选择 Tag，并保留其中最近推送或拉取的 N 个、D 天内推送或拉取的，或全部；没有规则保留的将被删除。先试运行生成计划并预览，再执行该计划：执行时逐项复核，计划之后被移动或重新推送的 Tag 会被保留并报告。", en: "Rules select tags by image and tag patterns (with exclusions) and keep the N most recently pushed or pulled, those pushed or pulled within D days, or all; what no rule keeps is deleted. Make a dry run to preview the plan, then apply that plan: each item is checked again, and a tag moved or pushed since the plan is kept and reported." },
  "retention.rules": { "zh-CN": "规则", en: "Rules" },
  "retention.images": { "zh-CN": "镜像", en: "Images" },
  "retention.excludeImages": { "zh-CN": "排除镜像", en: "Except images" },
  "retention.tags": { "zh-CN": "Tag", en: "Tags" },
  "retention.tag": { "zh-CN": "Tag", en: "Tag" },
  "retention.excludeTags": { "zh-CN": "排除 Tag", en: "Except tags" },
  "retention.keep": { "zh-CN": "保留", en: "Keep" },
  "retention.keep.latest_pushed": { "zh-CN": "最近推送的 N 个", en: "the N most recently pushed" },
  "retention.keep.latest_pulled": { "zh-CN": "最近拉取的 N 个", en: "the N most recently pulled" },
  "retention.keep.pushed_within": { "zh-CN": "D 天内推送的", en: "pushed within D days" },
  "retention.keep.pulled_within": { "zh-CN": "D 天内拉取的", en: "pulled within D days" },
  "retention.keep.always": { "zh-CN": "全部", en: "all" },
  "retention.unit.tags": { "zh-CN": "个", en: "tags" },
  "retention.unit.days": { "zh-CN": "天", en: "days" },
  "retention.deleteUntagged": { "zh-CN": "同时删除无 Tag 的镜像版本", en: "Also delete untagged manifests" },
  "retention.includeImmutable": { "zh-CN": "包括不可变 Tag", en: "Include immutable tags" },
  "retention.schedule": { "zh-CN": "定时执行", en: "Schedule" },
  "retention.schedule.none": { "zh-CN": "不定时", en: "none" },
  "retention.schedule.daily": { "zh-CN": "每天（UTC 时间）", en: "daily at (UTC)" },
  "retention.schedule.hours": { "zh-CN": "每隔 N 小时", en: "every N hours" },
  "retention.addRule": { "zh-CN": "添加规则", en: "Add rule" },
  "retention.save": { "zh-CN": "保存策略", en: "Save policy" },
  "retention.saved": { "zh-CN": "保留策略已保存", en: "Retention policy saved" },
  "retention.dryRun": { "zh-CN": "试运行", en: "Dry run" },
  "retention.preview": { "zh-CN": "计划预览", en: "Plan preview" },
  "retention.summary": { "zh-CN": "计划 #{id}：删除 {tagsDeleted} 个 Tag、保留 {tagsKept} 个；删除 {manifestsDeleted} 个镜像版本、保留 {manifestsKept} 个", en: "Plan #{id}: {tagsDeleted} tags deleted, {tagsKept} kept; {manifestsDeleted} manifests deleted, {manifestsKept} kept" },
  "retention.apply": { "zh-CN": "执行计划", en: "Apply plan" },
  "retention.applyTitle": { "zh-CN": "执行计划 #{id}", en: "Apply plan #{id}" },
  "retention.applyBody": { "zh-CN": "将删除 {tags} 个 Tag 和 {manifests} 个镜像版本，正如预览所示；计划之后有变化的项目会被保留。此操作不可撤销。", en: "This deletes {tags} tags and {manifests} manifests, exactly as previewed; items that changed since the plan are kept. This cannot be undone." },
  "retention.applied": { "zh-CN": "已执行：删除 {tags} 个 Tag、{manifests} 个镜像版本；{kept} 项因计划后有变化而保留", en: "Applied: {tags} tags and {manifests} manifests deleted; {kept} items kept because they changed since the plan" },
  "retention.appliedToast": { "zh-CN": "计划 #{id} 已执行", en: "Plan #{id} applied" },
  "retention.plans": { "zh-CN": "最近的计划", en: "Recent plans" },
  "retention.noPlans": { "zh-CN": "暂无计划", en: "No plans yet" },
  "retention.open": { "zh-CN": "查看", en: "Open" },
  "retention.updated": { "zh-CN": "{who} 于 {when} 修改", en: "Changed by {who} at {when}" },
  "retention.notSet": { "zh-CN": "尚未设置保留策略：不会删除任何内容。", en: "No retention policy yet: nothing is deleted." },
  "retention.manifestWithTags": { "zh-CN": "镜像版本（{n} 个 Tag）", en: { one: "manifest (1 tag)", other: "manifest ({n} tags)" } },
  "retention.untagged": { "zh-CN": "无 Tag 的镜像版本", en: "untagged manifest" },
  "retention.verdict": { "zh-CN": "结论", en: "Verdict" },
  "retention.verdict.keep": { "zh-CN": "保留", en: "keep" },
  "retention.verdict.delete": { "zh-CN": "删除", en: "delete" },
  "retention.reason": { "zh-CN": "原因", en: "Reason" },
  "retention.reason.rule": { "zh-CN": "规则 {n} 保留", en: "kept by rule {n}" },
  "retention.reason.no_rule": { "zh-CN": "没有规则保留", en: "no rule keeps it" },
  "retention.reason.immutable": { "zh-CN": "不可变 Tag，已跳过", en: "immutable tag, skipped" },
  "retention.reason.off": { "zh-CN": "没有规则：不删除", en: "no rules: nothing is deleted" },
  "retention.reason.tag_kept": { "zh-CN": "有 Tag 被保留", en: "a tag of it is kept" },
  "retention.reason.needed": { "zh-CN": "被保留的镜像版本需要它", en: "a kept manifest needs it" },
  "retention.reason.referrer": { "zh-CN": "引用被保留的镜像版本", en: "refers to a kept manifest" },
  "retention.reason.tags_deleted": { "zh-CN": "其 Tag 全部删除", en: "all its tags are deleted" },
  "retention.reason.untagged": { "zh-CN": "无 Tag", en: "untagged" },
  "retention.outcome": { "zh-CN": "执行结果", en: "Outcome" },
  "retention.outcome.deleted": { "zh-CN": "已删除", en: "deleted" },
  "retention.outcome.gone": { "zh-CN": "已不存在", en: "already gone" },
  "retention.outcome.moved": { "zh-CN": "已移动，保留", en: "moved since, kept" },
  "retention.outcome.pushed_since": { "zh-CN": "已重新推送，保留", en: "pushed since, kept" },
  "retention.outcome.immutable": { "zh-CN": "已成为不可变，保留", en: "immutable now, kept" },
  "retention.outcome.tagged": { "zh-CN": "已有新 Tag，保留", en: "tagged since, kept" },
  "retention.outcome.referenced": { "zh-CN": "仍被引用，保留", en: "still referenced, kept" },
  "retention.trigger.manual": { "zh-CN": "手动", en: "manual" },
  "retention.trigger.schedule": { "zh-CN": "定时", en: "scheduled" },
  "retention.status.planned": { "zh-CN": "未执行", en: "not applied" },
  "retention.status.applying": { "zh-CN": "执行中", en: "applying" },
  "retention.status.applied": { "zh-CN": "已执行", en: "applied" },
  "lang.other": { "zh-CN": "English", en: "中文" },
  "lang.switchTitle": { "zh-CN": "切换语言", en: "Switch language" },

  // --- signing in
  "auth.signIn": { "zh-CN": "登录", en: "Sign in" },
  "auth.signOut": { "zh-CN": "退出登录", en: "Sign out" },
  "auth.signInTitle": { "zh-CN": "登录容器镜像仓库", en: "Sign in to Container Registry" },
  "auth.signInIntro": {
    "zh-CN": "使用平台账号和密码登录。访问令牌只用于 docker login。",
    en: "Use your platform username and password. Access tokens are for docker login only.",
  },
  "auth.failed": { "zh-CN": "用户名或密码错误", en: "Wrong username or password" },
  "auth.browseShared": { "zh-CN": "不登录，浏览分享镜像库和平台镜像", en: "Browse shared registries and platform images without signing in" },

  // --- buttons
  "action.add": { "zh-CN": "添加", en: "Add" },
  "action.batchDelete": { "zh-CN": "批量删除", en: "Delete selected" },
  "action.batchDeleteN": { "zh-CN": "批量删除（{n}）", en: "Delete selected ({n})" },
  "action.cancel": { "zh-CN": "取消", en: "Cancel" },
  "action.close": { "zh-CN": "关闭", en: "Close" },
  "action.confirm": { "zh-CN": "确定", en: "OK" },
  "action.copy": { "zh-CN": "复制", en: "Copy" },
  "action.copyDigest": { "zh-CN": "复制完整 Digest", en: "Copy the full digest" },
  "action.create": { "zh-CN": "创建", en: "Create" },
  "action.delete": { "zh-CN": "删除", en: "Delete" },
  "rights.ownersOnly": {
    "zh-CN": "只有项目组的所有者可以修改或删除此镜像库",
    en: "Only the owners of its project group may change or delete this registry",
  },
  "action.disable": { "zh-CN": "禁用", en: "Disable" },
  "action.enable": { "zh-CN": "启用", en: "Enable" },
  "action.modify": { "zh-CN": "修改", en: "Edit" },
  "action.modifyLabels": { "zh-CN": "修改标签", en: "Edit labels" },
  "action.refresh": { "zh-CN": "刷新", en: "Refresh" },
  "action.remove": { "zh-CN": "移除", en: "Remove" },
  "action.revoke": { "zh-CN": "撤销", en: "Revoke" },
  "action.tagList": { "zh-CN": "Tag列表", en: "Tag list" },

  // --- columns
  "col.access": { "zh-CN": "权限", en: "Access" },
  "col.address": { "zh-CN": "镜像库地址", en: "Registry address" },
  "col.admin": { "zh-CN": "平台管理员", en: "Platform admin" },
  "col.created": { "zh-CN": "创建时间", en: "Created" },
  "col.createdUpdated": { "zh-CN": "创建时间/更新时间", en: "Created / updated" },
  "col.description": { "zh-CN": "描述", en: "Description" },
  "col.digest": { "zh-CN": "Digest", en: "Digest" },
  "col.expires": { "zh-CN": "过期时间", en: "Expires" },
  "col.group": { "zh-CN": "项目组", en: "Project group" },
  "col.image": { "zh-CN": "镜像", en: "Image" },
  "col.imageCount": { "zh-CN": "镜像数量", en: "Images" },
  "col.imagePulls": { "zh-CN": "镜像拉取次数", en: "Pulls" },
  "col.labels": { "zh-CN": "标签", en: "Labels" },
  "col.lastUsed": { "zh-CN": "最近使用", en: "Last used" },
  "col.latestTag": { "zh-CN": "最新Tag", en: "Latest tag" },
  "col.members": { "zh-CN": "成员数", en: "Members" },
  "col.myRole": { "zh-CN": "我的角色", en: "My role" },
  "col.name": { "zh-CN": "名称", en: "Name" },
  "col.nameId": { "zh-CN": "名称/资源ID", en: "Name / resource ID" },
  "col.operations": { "zh-CN": "操作", en: "Operations" },
  "col.public": { "zh-CN": "是否为公有仓库", en: "Visibility" },
  "col.pullCommand": { "zh-CN": "拉取命令", en: "Pull command" },
  "col.pullCount": { "zh-CN": "镜像拉取次数", en: "Pulls" },
  "col.resourceId": { "zh-CN": "资源ID", en: "Resource ID" },
  "col.role": { "zh-CN": "角色", en: "Role" },
  "col.size": { "zh-CN": "大小", en: "Size" },
  "col.storage": { "zh-CN": "存储用量", en: "Storage" },
  "col.immutableTags": { "zh-CN": "不可变标签", en: "Immutable tags" },
  "immutable.none": { "zh-CN": "无", en: "None" },
  "immutable.hint": {
    "zh-CN": "匹配这些规则的标签推送后不能再指向其他镜像；仓库所有者和平台管理员仍可删除",
    en: "Tags matching these rules never point at another image once pushed; the registry's owners and platform admins may still delete them",
  },
  "usage.ofQuota": { "zh-CN": "{used} / 配额 {quota}", en: "{used} of {quota}" },
  "usage.unique": { "zh-CN": "独占 {size}", en: "{size} unique" },
  "usage.uniqueHint": {
    "zh-CN": "没有其他仓库引用的部分：删除该仓库并完成垃圾回收后释放的空间",
    en: "The part no other registry references: what deleting this registry frees after garbage collection",
  },
  "col.status": { "zh-CN": "状态", en: "Status" },
  "col.tagCount": { "zh-CN": "Tag数量", en: "Tags" },
  "col.tokenId": { "zh-CN": "令牌ID", en: "Token ID" },
  "col.username": { "zh-CN": "用户名", en: "Username" },

  // --- statuses and values
  "status.available": { "zh-CN": "可用", en: "Available" },
  "status.deleting": { "zh-CN": "删除中", en: "Deleting" },
  "status.deletingEllipsis": { "zh-CN": "删除中…", en: "Deleting…" },
  "visibility.public": { "zh-CN": "公有", en: "Public" },
  "visibility.private": { "zh-CN": "私有", en: "Private" },
  "role.owner": { "zh-CN": "所有者", en: "Owner" },
  "role.developer": { "zh-CN": "开发者", en: "Developer" },
  "role.guest": { "zh-CN": "访客", en: "Guest" },

  // --- form fields and validation
  "form.access": { "zh-CN": "权限", en: "Access" },
  "form.description": { "zh-CN": "描述", en: "Description" },
  "form.expires": { "zh-CN": "过期日期", en: "Expires on" },
  "form.group": { "zh-CN": "项目组", en: "Project group" },
  "form.labels": { "zh-CN": "标签", en: "Labels" },
  "form.name": { "zh-CN": "名称", en: "Name" },
  "form.password": { "zh-CN": "密码", en: "Password" },
  "form.public": { "zh-CN": "是否为公有仓库", en: "Visibility" },
  "form.remark": { "zh-CN": "备注", en: "Remark" },
  "form.tokenName": { "zh-CN": "令牌名称", en: "Token name" },
  "form.username": { "zh-CN": "用户名", en: "Username" },
  "validate.required": { "zh-CN": "必填", en: "Required" },
  "validate.name.required": { "zh-CN": "请输入名称", en: "Enter a name" },
  "validate.name.chars": {
    "zh-CN": "只能包含小写字母、数字、“.”、“_”和“-”",
    en: "Use only lower-case letters, digits, '.', '_' and '-'",
  },
  "validate.name.short": { "zh-CN": "名称至少 2 个字符", en: "The name needs at least 2 characters" },
  "validate.name.long": { "zh-CN": "名称最多 63 个字符", en: "The name has at most 63 characters" },
  "validate.name.edges": {
    "zh-CN": "名称须以小写字母或数字开头和结尾",
    en: "The name must start and end with a letter or digit",
  },
  "validate.labels.keyRequired": { "zh-CN": "标签键不能为空", en: "A label needs a key" },
  "validate.labels.keyLong": { "zh-CN": "标签键最多 128 个字符", en: "Label keys have at most 128 characters" },
  "validate.labels.valueLong": { "zh-CN": "标签值最多 256 个字符", en: "Label values have at most 256 characters" },
  "validate.labels.duplicate": { "zh-CN": "标签键“{key}”重复", en: "The label key '{key}' appears twice" },
  "labels.add": { "zh-CN": "添加标签", en: "Add label" },
  "labels.remove": { "zh-CN": "删除", en: "Remove" },
  "labels.key": { "zh-CN": "标签键", en: "Key" },
  "labels.value": { "zh-CN": "标签值", en: "Value" },
  "labels.count": { "zh-CN": "已添加 {n}/{max} 个", en: "{n} of {max}" },

  // --- lists
  "table.empty": { "zh-CN": "暂无数据", en: "Nothing here yet" },
  "table.loading": { "zh-CN": "加载中…", en: "Loading…" },
  "table.select": { "zh-CN": "选择 {name}", en: "Select {name}" },
  "table.selectAll": { "zh-CN": "全选本页", en: "Select all on this page" },
  "pager.total": { "zh-CN": "共 {n} 条", en: { one: "{n} item", other: "{n} items" } },
  "pager.page": { "zh-CN": "第 {page}/{pages} 页", en: "Page {page} of {pages}" },
  "pager.prev": { "zh-CN": "上一页", en: "Previous" },
  "pager.next": { "zh-CN": "下一页", en: "Next" },
  "pager.size": { "zh-CN": "每页条数", en: "Items per page" },
  "pager.perPage": { "zh-CN": "{n} 条/页", en: "{n} / page" },
  "toolbar.searchName": { "zh-CN": "按名称搜索", en: "Search by name" },
  "toolbar.searchImage": { "zh-CN": "按镜像名称搜索", en: "Search images" },
  "toolbar.searchTag": { "zh-CN": "按Tag搜索", en: "Search tags" },
  "toolbar.searchUser": { "zh-CN": "按用户名搜索", en: "Search users" },
  "toolbar.group": { "zh-CN": "按项目组筛选", en: "Filter by project group" },
  "toolbar.allGroups": { "zh-CN": "全部项目组", en: "All project groups" },
  "toolbar.labelPlaceholder": { "zh-CN": "按标签筛选，如 env:prod", en: "Label, e.g. env:prod" },
  "toolbar.labelFormat": { "zh-CN": "格式为 键:值", en: "Use key:value" },
  "toolbar.sort": { "zh-CN": "排序", en: "Sort" },
  "sort.nameAsc": { "zh-CN": "名称 A→Z", en: "Name A→Z" },
  "sort.nameDesc": { "zh-CN": "名称 Z→A", en: "Name Z→A" },
  "sort.createdDesc": { "zh-CN": "最新创建", en: "Newest first" },
  "sort.createdAsc": { "zh-CN": "最早创建", en: "Oldest first" },
  "sort.updatedDesc": { "zh-CN": "最近更新", en: "Recently updated" },
  "sort.pullsDesc": { "zh-CN": "拉取次数最多", en: "Most pulled" },
  "sort.imagesDesc": { "zh-CN": "镜像数量最多", en: "Most images" },
  "batch.ok": { "zh-CN": "已删除", en: "deleted" },
  "batch.someFailed": {
    "zh-CN": "{ok} 项已删除，{failed} 项失败",
    en: "{ok} deleted, {failed} failed",
  },

  // --- user registries
  "registries.intro": {
    "zh-CN": "镜像库的名称全局唯一（平台级别）。镜像库的拉取次数每{interval}刷新一次。",
    en: "Registry names are unique across the platform. Registry pull counts refresh every {interval}.",
  },
  "registries.create": { "zh-CN": "创建镜像库", en: "Create registry" },
  "registries.create.title": { "zh-CN": "创建用户镜像库", en: "Create a user registry" },
  "registries.create.done": { "zh-CN": "已创建镜像库 {name}", en: "Registry {name} created" },
  "registries.form.nameHint": {
    "zh-CN": "2–63 个字符，只能包含小写字母、数字、“.”、“_”、“-”，以字母或数字开头和结尾；平台内全局唯一",
    en: "2–63 characters: a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit; unique platform-wide",
  },
  "registries.form.publicHint": {
    "zh-CN": "私有仓库的镜像只允许有权限的用户查看和拉取；公有仓库的镜像允许所有人查看和拉取",
    en: "Only authorised users see and pull a private registry's images; everyone may see and pull a public one's",
  },
  "registries.form.defaultGroup": { "zh-CN": "我的默认项目组", en: "My default group" },
  "registries.pullRefreshHint": {
    "zh-CN": "镜像库内镜像拉取的次数，每{interval}刷新一次",
    en: "Pulls of the registry's images, refreshed every {interval}",
  },
  "interval.seconds": { "zh-CN": "{n}秒", en: { one: "second", other: "{n} seconds" } },
  "interval.minutes": { "zh-CN": "{n}分钟", en: { one: "minute", other: "{n} minutes" } },
  "interval.hours": { "zh-CN": "{n}小时", en: { one: "hour", other: "{n} hours" } },
  "registries.pullRefreshPeriodic": { "zh-CN": "镜像库内镜像拉取的次数，定期刷新", en: "Pulls of the registry's images, refreshed periodically" },
  "registries.refreshedAt": { "zh-CN": "刷新于 {time}", en: "as of {time}" },
  "registries.notRefreshed": { "zh-CN": "尚未刷新", en: "not counted yet" },
  "registries.modify.title": { "zh-CN": "修改用户镜像库 {name}", en: "Edit registry {name}" },
  "registries.modify.done": { "zh-CN": "已修改镜像库 {name}", en: "Registry {name} saved" },
  "registries.labels.title": { "zh-CN": "修改标签：{name}", en: "Edit labels: {name}" },
  "registries.labels.hint": {
    "zh-CN": "最多 20 个标签；键 1–128 个字符，值最多 256 个字符",
    en: "Up to 20 labels; keys of 1–128 characters, values of up to 256",
  },
  "registries.labels.done": { "zh-CN": "已修改镜像库 {name} 的标签", en: "Labels of {name} saved" },
  "registries.delete.title": { "zh-CN": "删除用户镜像库", en: "Delete user registry" },
  "registries.delete.question": { "zh-CN": "确定删除镜像库“{name}”吗？", en: "Delete the registry '{name}'?" },
  "registries.delete.empty": { "zh-CN": "该镜像库内没有镜像，可直接删除。", en: "It holds no images and can be deleted at once." },
  "registries.delete.holds": {
    "zh-CN": "该镜像库内有 {n} 个镜像（共 {tags} 个Tag），将一同删除。",
    en: { one: "It holds 1 image ({tags} tags), which will be deleted too.", other: "It holds {n} images ({tags} tags), which will be deleted too." },
  },
  "registries.delete.holdsImages": {
    "zh-CN": "该镜像库内有 {n} 个镜像，将一同删除。",
    en: { one: "It holds 1 image, which will be deleted too.", other: "It holds {n} images, which will be deleted too." },
  },
  "registries.delete.tick": { "zh-CN": "删除镜像仓库中所有镜像", en: "Delete all images in this registry" },
  "registries.delete.tickHint": {
    "zh-CN": "镜像库内有镜像时，需先勾选“删除镜像仓库中所有镜像”，否则不可删除。",
    en: "A registry holding images can only be deleted once 'Delete all images in this registry' is ticked.",
  },
  "registries.delete.inProgress": { "zh-CN": "镜像库 {name} 删除中，请稍候…", en: "Deleting {name}…" },
  "registries.delete.slow": {
    "zh-CN": "删除仍在进行，列表中的状态为“删除中”，完成后镜像库会消失。",
    en: "Still deleting: the list shows 'Deleting' until it is gone.",
  },
  "registries.delete.done": { "zh-CN": "已删除镜像库 {name}", en: "Registry {name} deleted" },
  "registries.batch.title": { "zh-CN": "批量删除用户镜像库", en: "Delete user registries" },
  "registries.batch.question": {
    "zh-CN": "确定删除以下 {n} 个镜像库吗？",
    en: { one: "Delete this registry?", other: "Delete these {n} registries?" },
  },
  "registries.batch.done": {
    "zh-CN": "已删除 {n} 个镜像库",
    en: { one: "1 registry deleted", other: "{n} registries deleted" },
  },

  // --- images
  "images.title": { "zh-CN": "镜像列表", en: "Images" },
  "images.emptyUser": {
    "zh-CN": "镜像库中还没有镜像，按上方“上传和拉取镜像”中的命令推送第一个镜像。",
    en: "No images yet: push one with the commands under 'Push and pull images' above.",
  },
  "images.push.title": { "zh-CN": "上传和拉取镜像", en: "Push and pull images" },
  "images.pull.title": { "zh-CN": "拉取镜像", en: "Pull images" },
  "images.push.tag": { "zh-CN": "本地对镜像打一个tag", en: "Tag a local image" },
  "images.push.push": { "zh-CN": "提交镜像到镜像库", en: "Push it to the registry" },
  "images.push.pull": { "zh-CN": "拉取镜像", en: "Pull an image" },
  "images.push.local": { "zh-CN": "本地镜像名", en: "local image" },
  "images.push.image": { "zh-CN": "镜像", en: "image" },
  "images.delete.title": { "zh-CN": "删除镜像", en: "Delete image" },
  "images.delete.question": { "zh-CN": "确定删除镜像“{name}”吗？", en: "Delete the image '{name}'?" },
  "images.delete.tags": {
    "zh-CN": "镜像删除后，镜像内所有Tag（共 {n} 个）会一同删除。",
    en: { one: "Its only tag will be deleted with it.", other: "All {n} of its tags will be deleted with it." },
  },
  "images.delete.tagCount": { "zh-CN": "{n} 个Tag", en: { one: "1 tag", other: "{n} tags" } },
  "images.delete.done": { "zh-CN": "已删除镜像 {name}", en: "Image {name} deleted" },
  "images.batch.title": { "zh-CN": "批量删除镜像", en: "Delete images" },
  "images.batch.question": {
    "zh-CN": "确定删除以下 {n} 个镜像吗？镜像内所有Tag（共 {tags} 个）会一同删除。",
    en: { one: "Delete this image? Its {tags} tag(s) go with it.", other: "Delete these {n} images? All {tags} of their tags go with them." },
  },
  "images.batch.done": { "zh-CN": "已删除 {n} 个镜像", en: { one: "1 image deleted", other: "{n} images deleted" } },
  "platform.intro": {
    "zh-CN": "平台镜像是平台提供的镜像，支持所有用户查看和拉取。镜像拉取次数实时更新。",
    en: "Platform images are provided by the platform; every user may view and pull them. Pull counts are live.",
  },
  "shared.intro": {
    "zh-CN": "设为公有仓库的用户镜像库会同时在分享镜像库中展示，允许所有用户查看和拉取。",
    en: "Every public user registry appears here; everyone may view and pull its images.",
  },

  // --- tags
  "tags.title": { "zh-CN": "{name} 的Tag列表", en: "Tags of {name}" },
  "tags.back": { "zh-CN": "返回", en: "Back" },
  "tags.imageGone": { "zh-CN": "镜像 {name} 不存在或已被删除。", en: "The image {name} does not exist or was deleted." },
  "tags.delete.title": { "zh-CN": "删除镜像Tag", en: "Delete tag" },
  "tags.delete.question": { "zh-CN": "确定删除Tag“{name}”吗？", en: "Delete the tag '{name}'?" },
  "tags.delete.last": {
    "zh-CN": "这是镜像 {name} 的最后一个Tag：镜像下所有Tag都被删除后，镜像会一同删除。",
    en: "This is the last tag of {name}: when an image's last tag goes, the image goes too.",
  },
  "tags.delete.done": { "zh-CN": "已删除Tag {name}", en: "Tag {name} deleted" },
  "tags.delete.imageDeleted": {
    "zh-CN": "镜像 {name} 的所有Tag已删除，镜像已一同删除",
    en: "The last tag is gone, and the image {name} with it",
  },
  "tags.batch.title": { "zh-CN": "批量删除镜像Tag", en: "Delete tags" },
  "tags.batch.question": {
    "zh-CN": "确定删除镜像 {name} 的以下 {n} 个Tag吗？",
    en: { one: "Delete this tag of {name}?", other: "Delete these {n} tags of {name}?" },
  },
  "tags.batch.done": { "zh-CN": "已删除 {n} 个Tag", en: { one: "1 tag deleted", other: "{n} tags deleted" } },

  // --- access tokens
  "tokens.intro": {
    "zh-CN": "个人访问令牌可代替密码用于 docker login（例如在 CI 中）。令牌只在创建时显示一次。",
    en: "Personal access tokens stand in for your password in docker login (e.g. in CI). A token is shown only once.",
  },
  "tokens.create": { "zh-CN": "创建访问令牌", en: "Create access token" },
  "users.blocked": { "zh-CN": "已锁定至 {time}", en: "Blocked until {time}" },
  "users.unlockDone": { "zh-CN": "已解除 {name} 的登录锁定", en: "{name} may sign in again" },
  "action.unlock": { "zh-CN": "解除锁定", en: "Unlock" },
  "tokens.empty": { "zh-CN": "还没有访问令牌", en: "No access tokens yet" },
  "tokens.readOnly": { "zh-CN": "只读", en: "Read only" },
  "tokens.readWrite": { "zh-CN": "读写", en: "Read and write" },
  "tokens.readOnlyHint": { "zh-CN": "只读（只能拉取，不能推送或删除）", en: "Read only (pull, no push or delete)" },
  "tokens.expiresHint": { "zh-CN": "留空表示永不过期", en: "Leave empty for a token that never expires" },
  "tokens.never": { "zh-CN": "永不过期", en: "Never" },
  "tokens.status.active": { "zh-CN": "有效", en: "Active" },
  "tokens.status.revoked": { "zh-CN": "已撤销", en: "Revoked" },
  "tokens.status.expired": { "zh-CN": "已过期", en: "Expired" },
  "tokens.created.title": { "zh-CN": "访问令牌已创建", en: "Access token created" },
  "tokens.created.once": {
    "zh-CN": "请立即复制并妥善保存：令牌只显示这一次，关闭后无法再次查看。",
    en: "Copy it now and keep it safe: it is shown only this once.",
  },
  "tokens.created.usage": { "zh-CN": "用作 docker login 的密码：", en: "Use it as the password of docker login:" },
  "tokens.revoke.title": { "zh-CN": "撤销访问令牌", en: "Revoke access token" },
  "tokens.revoke.question": {
    "zh-CN": "确定撤销令牌“{name}”吗？使用它的客户端将立即无法登录。",
    en: "Revoke the token '{name}'? Clients using it are signed out at once.",
  },
  "tokens.revoke.done": { "zh-CN": "已撤销令牌 {name}", en: "Token {name} revoked" },

  // --- project groups
  "groups.intro": {
    "zh-CN": "每个镜像库属于一个项目组，项目组成员按角色访问其中的镜像库。",
    en: "Every registry belongs to a project group; members reach its registries by their role.",
  },
  "groups.rolesIntro": {
    "zh-CN": "访客：查看和拉取；开发者：另可推送、删除镜像和Tag；所有者：另可修改、删除镜像库并管理成员。",
    en: "Guest: view and pull. Developer: also push and delete images and tags. Owner: also change and delete registries and manage members.",
  },
  "groups.create": { "zh-CN": "创建项目组", en: "Create project group" },
  "groups.created": { "zh-CN": "已创建项目组 {name}", en: "Project group {name} created" },
  "groups.nameHint": { "zh-CN": "1–64 个字符：小写字母、数字、“.”、“_”、“-”", en: "1–64 characters: a-z, 0-9, '.', '_', '-'" },
  "groups.members": { "zh-CN": "成员", en: "Members" },
  "groups.membersOf": { "zh-CN": "项目组 {name} 的成员", en: "Members of {name}" },
  "groups.addMember": { "zh-CN": "添加成员", en: "Add a member" },
  "groups.memberAdded": { "zh-CN": "已添加成员 {name}", en: "{name} added" },
  "groups.roleChanged": { "zh-CN": "{name} 的角色已改为{role}", en: "{name} is now {role}" },
  "groups.remove.title": { "zh-CN": "移除成员", en: "Remove member" },
  "groups.remove.question": {
    "zh-CN": "确定将 {name} 移出项目组 {group} 吗？",
    en: "Remove {name} from the project group {group}?",
  },
  "groups.remove.done": { "zh-CN": "已移除 {name}", en: "{name} removed" },

  // --- users
  "users.intro": { "zh-CN": "平台管理员可创建、禁用和启用用户。", en: "Platform admins create, disable and enable users." },
  "users.create": { "zh-CN": "创建用户", en: "Create user" },
  "users.created": { "zh-CN": "已创建用户 {name}", en: "User {name} created" },
  "users.admin": { "zh-CN": "管理员", en: "Admin" },
  "users.user": { "zh-CN": "普通用户", en: "User" },
  "users.active": { "zh-CN": "正常", en: "Active" },
  "users.disabled": { "zh-CN": "已禁用", en: "Disabled" },
  "users.disabledDone": { "zh-CN": "已禁用 {name}", en: "{name} disabled" },
  "users.enabledDone": { "zh-CN": "已启用 {name}", en: "{name} enabled" },
  "users.you": { "zh-CN": "当前用户", en: "You" },
  "users.makeAdmin": { "zh-CN": "设为平台管理员", en: "Make a platform admin" },
  "users.usernameHint": {
    "zh-CN": "1–64 个字符：小写字母、数字、“.”、“_”、“-”，以字母或数字开头和结尾",
    en: "1–64 characters: a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit",
  },
  "users.passwordHint": { "zh-CN": "至少 8 个字符", en: "At least 8 characters" },

  // --- messages
  "toast.copied": { "zh-CN": "已复制", en: "Copied" },
  "toast.copyFailed": { "zh-CN": "复制失败，请手动选择文本复制", en: "Could not copy; select the text instead" },
  "error.unknown": { "zh-CN": "操作失败，请稍后重试", en: "Something went wrong; try again" },
  "error.pageNotFound": { "zh-CN": "页面不存在。", en: "There is no such page." },
  "error.NETWORK": { "zh-CN": "无法连接服务器，请检查网络", en: "Cannot reach the server" },
  "error.UNAUTHENTICATED": { "zh-CN": "请先登录", en: "Please sign in" },
  "error.PERMISSION_DENIED": { "zh-CN": "没有权限执行此操作", en: "You may not do this" },
  "error.NOT_FOUND": { "zh-CN": "对象不存在或无权访问", en: "It does not exist, or you may not see it" },
  "error.NOT_FOUND.project_group": { "zh-CN": "项目组不存在", en: "No such project group" },
  "error.NOT_FOUND.username": { "zh-CN": "用户不存在", en: "No such user" },
  "error.ALREADY_EXISTS": { "zh-CN": "名称已存在", en: "That name is taken" },
  "error.REGISTRY_EXISTS": {
    "zh-CN": "名称“{name}”已被使用，镜像库名称在平台内全局唯一",
    en: "The name '{name}' is taken; registry names are unique platform-wide",
  },
  "error.REGISTRY_NOT_EMPTY": {
    "zh-CN": "镜像库内有 {image_count} 个镜像，需先勾选“删除镜像仓库中所有镜像”",
    en: "It holds {image_count} images: tick 'Delete all images in this registry' first",
  },
  "error.REGISTRY_DELETING": {
    "zh-CN": "镜像库“{name}”正在删除中",
    en: "The registry '{name}' is already being deleted",
  },
  "error.TOO_MANY_REQUESTS": { "zh-CN": "尝试次数过多，请稍后再试", en: "Too many attempts; try again later" },
  "error.INVALID_ARGUMENT": { "zh-CN": "输入不符合要求：{message}", en: "Invalid input: {message}" },
  "error.INVALID_ARGUMENT.name": {
    "zh-CN": "名称不符合规则：2–63 个字符，只能包含小写字母、数字、“.”、“_”、“-”，以字母或数字开头和结尾",
    en: "Invalid name: 2–63 characters of a-z, 0-9, '.', '_', '-', starting and ending with a letter or digit",
  },
  "error.INVALID_ARGUMENT.labels": {
    "zh-CN": "标签不符合规则：最多 20 个，键 1–128 个字符，值最多 256 个字符",
    en: "Invalid labels: at most 20, keys of 1–128 characters, values of up to 256",
  },
  "error.INVALID_ARGUMENT.remark": { "zh-CN": "备注最多 1024 个字符", en: "The remark has at most 1024 characters" },
  "error.INVALID_ARGUMENT.username": {
    "zh-CN": "用户名不符合规则：1–64 个字符，小写字母、数字、“.”、“_”、“-”",
    en: "Invalid username: 1–64 characters of a-z, 0-9, '.', '_', '-'",
  },
  "error.INVALID_ARGUMENT.password": { "zh-CN": "密码至少 8 个字符", en: "The password needs at least 8 characters" },
  "error.INVALID_ARGUMENT.role": { "zh-CN": "角色无效", en: "Invalid role" },
  "error.INVALID_ARGUMENT.expires_at": { "zh-CN": "过期时间无效", en: "Invalid expiry date" },
  "error.INVALID_ARGUMENT.label": { "zh-CN": "标签筛选格式为 键:值", en: "Filter labels as key:value" },
};

function detect() {
  try {
    const saved = window.localStorage.getItem(STORAGE_KEY);
    if (LANGS.includes(saved)) return saved;
  } catch {
    // storage may be off; fall back to the browser's language
  }
  const wanted = (navigator.languages && navigator.languages[0]) || navigator.language || "";
  return wanted.toLowerCase().startsWith("zh") ? "zh-CN" : "en";
}

let current = detect();

export function getLang() {
  return current;
}

export function otherLang() {
  return current === "zh-CN" ? "en" : "zh-CN";
}

export function setLang(lang) {
  if (!LANGS.includes(lang)) return;
  current = lang;
  try {
    window.localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // not remembered, still switched
  }
}

export function has(key) {
  return Object.hasOwn(CATALOGUE, key);
}

export function t(key, vars = {}) {
  const entry = CATALOGUE[key];
  if (!entry) return key;
  let text = entry[current] ?? entry.en;
  if (text && typeof text === "object") text = vars.n === 1 ? text.one : text.other;
  return String(text).replace(/\{(\w+)\}/g, (whole, name) =>
    Object.hasOwn(vars, name) && vars[name] !== undefined && vars[name] !== null ? String(vars[name]) : whole,
  );
}
